"""``python -m turnstate``: the same as the ``turnstate`` command (``python -m turnstate --help``)."""

from __future__ import annotations

from turnstate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
