"""``turnstate bench``: one workload run against storages named by URL, with peers measured in the same run.

:mod:`~turnstate.bench.workload` defines the turn, :mod:`~turnstate.bench.peers` the same turn without
turnstate, :mod:`~turnstate.bench.runner` the rows measured, :mod:`~turnstate.bench.report` and
:mod:`~turnstate.bench.plots` what is shown. The command itself is :mod:`turnstate.cli.bench`.
"""
