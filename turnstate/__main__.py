"""Operator commands: ``python -m turnstate reencrypt --help``."""

from __future__ import annotations

from turnstate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
