"""``bench``: turns/s, latency percentiles and server work per turn of each storage named, with the peers
measured in the same run (see :mod:`turnstate.bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import uuid
from contextlib import AbstractAsyncContextManager, AsyncExitStack, nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

import msgspec

from turnstate.bench.peers import AgentsPeer, BlobPeer, BotbuilderPeer, CosmosPeer, RedisPeer, StorageCharges
from turnstate.bench.plots import write_plots
from turnstate.bench.report import table
from turnstate.bench.results import MergeError, Run, as_json, from_json, merged
from turnstate.bench.runner import ROWS, PeerEntry, Plan, Subjects, bench_storage
from turnstate.bench.workload import __doc__ as WORKLOAD
from turnstate.cli.common import describe
from turnstate.cli.console import CHECK_FAILED, OK, Refused
from turnstate.cli.progress import Progress
from turnstate.cli.urls import FORMS, cosmos_target, opened, redacted, redis_target
from turnstate.storage.base import Storage
from turnstate.storage.memory import MemoryStorage

RAW_CLIENT_TARGET = 0.70
"""turnstate must reach this fraction of the raw client's turns/s on its server."""
_PACKAGES = (
    "turnstate",
    "msgspec",
    "redis",
    "azure-cosmos",
    "azure-storage-blob",
    "botbuilder-core",
    "microsoft-agents-hosting-core",
)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
    }


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _plan(args: argparse.Namespace) -> Plan:
    plan = Plan.quick() if args.quick else Plan()
    changes: dict[str, Any] = {}
    if args.seconds is not None:
        changes["seconds"] = args.seconds
    if args.rounds is not None:
        changes["rounds"] = args.rounds
    if args.scale is not None:
        changes["scale"] = args.scale
    if args.only is not None:
        changes["rows"] = args.only
    return dataclasses.replace(plan, **changes)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of counts") from exc
    if any(count < 0 for count in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: counts cannot be negative")
    return counts


def _rows(text: str) -> tuple[str, ...]:
    rows = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [row for row in rows if row not in ROWS]
    if unknown or not rows:
        raise argparse.ArgumentTypeError(f"{text!r}: rows are {', '.join(ROWS)}")
    return rows


def _optional_peer(entries: list[PeerEntry], skipped: dict[str, str], name: str, make: Any) -> None:
    try:
        peer = make()
    except ImportError as exc:
        skipped[name] = f"{exc.name or exc} is not installed (pip install 'turnstate[bench]')"
        return
    entries.append(PeerEntry(peer, None))


async def _subjects(spec: str, run: str, plan: Plan, stack: AsyncExitStack, peers: bool) -> Subjects:
    """turnstate's storage for ``spec``, a way to open more over the same data, and the peers to compare."""
    document_bytes = 1024 * plan.document_kb
    entries: list[PeerEntry] = []
    skipped: dict[str, str] = {}
    shown = redacted(spec)
    if spec == "memory:":
        memory = MemoryStorage()
        if peers:
            _optional_peer(entries, skipped, BotbuilderPeer.name, lambda: BotbuilderPeer(run, document_bytes))
            _optional_peer(entries, skipped, AgentsPeer.name, lambda: AgentsPeer(run, document_bytes))
        # a MemoryStorage is one process's memory: its "other instances" share the object
        return Subjects(shown, memory, "MemoryStorage", lambda: nullcontext(memory), None, entries, skipped)

    storage = await stack.enter_async_context(opened(spec, create=True, option="bench"))
    meter = StorageCharges(storage) if StorageCharges.available(storage) else None

    def reopen() -> AbstractAsyncContextManager[Storage]:
        return opened(spec, create=True, option="bench")

    subjects = Subjects(shown, storage, describe(storage), reopen, meter, entries, skipped)
    scheme = spec.split(":", 1)[0].lower()
    if not peers:
        return subjects
    if scheme in ("redis", "rediss", "unix"):
        target = redis_target(spec, "bench")
        redis_peer = await RedisPeer.connect(target.url, target.cluster, run, document_bytes)
        stack.push_async_callback(redis_peer.aclose)
        entries.append(PeerEntry(redis_peer, redis_peer, RAW_CLIENT_TARGET))
        subjects.meter = redis_peer  # the server's command count serves turnstate's turns too
    elif scheme == "cosmos":
        cosmos_peer = CosmosPeer.connect(cosmos_target(spec, stack, "bench"), run, document_bytes)
        stack.push_async_callback(cosmos_peer.aclose)
        entries.append(PeerEntry(cosmos_peer, cosmos_peer, RAW_CLIENT_TARGET))
    elif scheme == "blob":
        container = getattr(storage, "container_client", None)
        if container is not None:
            entries.append(PeerEntry(BlobPeer(container, run, document_bytes), None, RAW_CLIENT_TARGET))
    return subjects


def _saved(paths: list[str]) -> Run:
    runs = []
    for path in paths:
        try:
            runs.append(from_json(Path(path).read_bytes()))
        except OSError as exc:
            raise Refused(f"--from {path!r}: {exc.strerror or exc}") from exc
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Refused(f"--from {path!r} is not a turnstate bench --json file: {exc}") from exc
    try:
        return merged(runs)
    except MergeError as exc:
        raise Refused(f"--from: {exc}") from exc


def _show(run: Run, args: argparse.Namespace, out: TextIO) -> None:
    data = msgspec.json.format(msgspec.json.encode(as_json(run)), indent=2)
    if args.json == "-":
        out.write(data.decode() + "\n")
    else:
        out.write(table(run) + "\n")
        if args.json is not None:
            Path(args.json).write_bytes(data + b"\n")
    if args.plot is not None:
        for path in write_plots(run, Path(args.plot)):
            sys.stderr.write(f"wrote {path}\n")


async def bench(args: argparse.Namespace, out: TextIO) -> int:
    if bool(args.urls) == bool(args.saved):
        raise Refused("name the storages to measure, or give --from FILE... to show saved runs (not both)")
    plan = _plan(args)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise Refused("--plot needs matplotlib: pip install 'turnstate[bench]'") from exc
    if args.saved:
        _show(_saved(args.saved), args, out)
        return OK
    run_id = uuid.uuid4().hex[:8]
    command = shlex.join(["turnstate", *(redacted(a) for a in args.argv)])
    run = Run(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        machine=_machine(),
        versions=_versions(),
        plan=dataclasses.asdict(plan),
        workload=" ".join((WORKLOAD or "").split()),
    )
    for spec in args.urls:
        async with AsyncExitStack() as stack:
            subjects = await _subjects(spec, run_id, plan, stack, not args.no_peers)
            steps = plan.steps(len(subjects.peers))
            every = max(1, steps // 10)
            with Progress(f"bench {subjects.url}", steps, every=every, quiet=args.quiet) as progress:
                result = await bench_storage(subjects, plan, run_id, progress.advance)
            server = next((p.subject for p in subjects.peers if isinstance(p.subject, RedisPeer)), None)
            if server is not None:
                result.server = await server.server()
        run.storages.append(result)
    _show(run, args, out)
    failed = [result for result in run.storages if result.error is not None]
    for result in failed:
        sys.stderr.write(f"error: {result.url}: {result.error}\n")
    return CHECK_FAILED if failed else OK


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: list[argparse.ArgumentParser]
) -> None:
    p = commands.add_parser(
        "bench",
        help="benchmark storages: turns/s, latency, server work per turn, against peers",
        description="Run one workload against each storage named (the URLs of --storage, and memory: for "
        "a MemoryStorage) and print a table: turns/s and latency percentiles at 1, 8 and 64 concurrent "
        "conversations, with the storage's raw client (redis-py, azure-cosmos, azure-storage-blob) or, "
        "on memory:, botbuilder-core and the Agents SDK doing the same turn; Redis commands or Cosmos DB "
        "requests and RU per turn; documents of 1 to 64 KB; 8 and 32 writers on one conversation; and the "
        "same turns with 1,000 and 1,000,000 other documents stored. The run writes documents of its own "
        "(databases and containers are created if missing) and deletes them at the end. --quick shortens "
        "every row: seconds per storage instead of minutes.",
    )
    p.add_argument("urls", nargs="*", metavar="STORAGE-URL", help=f"memory: or {FORMS}")
    p.add_argument(
        "--from",
        dest="saved",
        nargs="+",
        metavar="FILE",
        help="measure nothing: show the runs saved with --json (merged, in order) as a table, JSON or plots",
    )
    p.add_argument(
        "--quick", action="store_true", help="short rounds, a few turns, 1,000 and 10,000 other documents"
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="also write the results as JSON to FILE (-: JSON on stdout instead of the table)",
    )
    p.add_argument("--plot", metavar="DIR", help="write PNG plots into DIR (needs matplotlib)")
    p.add_argument("--seconds", type=float, metavar="S", help="length of one measured round")
    p.add_argument("--rounds", type=int, metavar="N", help="rounds per row; the best is kept")
    p.add_argument("--scale", type=_counts, metavar="N,N", help="other documents stored for the scale rows")
    p.add_argument(
        "--only",
        type=_rows,
        metavar="ROWS",
        help=f"measure only these rows, comma-separated: {', '.join(ROWS)} (default all)",
    )
    p.add_argument("--no-peers", action="store_true", help="measure turnstate only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=bench)
