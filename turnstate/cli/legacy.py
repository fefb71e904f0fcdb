"""``turnstate migrate --from botbuilder|agents``: a Bot Framework SDK or Microsoft 365 Agents SDK bot's
stored state, read from a JSON file, written into a turnstate storage.

The file is what those SDKs store: a MemoryStorage dump (an object of key to item) or a Cosmos DB
container's items (a list of ``{id, realId, document}``). Bot Framework items keep their keys and are
served by ``BotBuilderStorage``; the Agents SDK's conversation and user state is copied into turnstate's
scopes (its other items are reported as skipped: ``AgentsStorage`` serves them where they are).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from turnstate.cli.console import Refused, emit_json
from turnstate.cli.urls import opened
from turnstate.manager import StateManager


def _load(path: str) -> Any:
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise Refused(f"SRC {path!r}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise Refused(f"SRC {path!r}: not JSON ({exc})") from exc
    if not isinstance(items, dict | list):
        raise Refused(f"SRC {path!r}: expected an object of key to item, or a list of Cosmos DB items")
    return items


async def migrate_from(args: argparse.Namespace, out: TextIO) -> int:
    """Copy what ``args.from_`` (``botbuilder`` or ``agents``) stored in the file SRC into DST."""
    items = _load(args.source)
    if args.from_ == "agents" and not args.bot:
        raise Refused("--from agents needs --bot, the agent's id as its activities carry it (recipient.id)")
    async with opened(args.destination, create=True, option="DST") as destination:
        if args.from_ == "botbuilder":
            copied, skipped = await _botbuilder(destination, items)
        else:
            copied, skipped = await _agents(destination, items, args.bot, args.tenant)
    if args.json:
        emit_json({"copied": len(copied), "skipped": len(skipped), "skipped_keys": skipped}, out)
    else:
        out.write(f"copied {len(copied)} items; skipped {len(skipped)}\n")
        for key in skipped:
            out.write(f"skipped {key!r}\n")
    return 0


async def _botbuilder(destination: Any, items: Any) -> tuple[list[str], list[str]]:
    try:
        from turnstate.integrations.botbuilder import BotBuilderStorage, import_botbuilder_items
    except ImportError as exc:
        raise Refused(f"--from botbuilder needs the botbuilder extra: {exc}") from exc
    report = await import_botbuilder_items(BotBuilderStorage(destination), items)
    return report.imported, [f"{key} (already there)" for key in report.skipped]


async def _agents(destination: Any, items: Any, bot: str, tenant: str | None) -> tuple[list[str], list[str]]:
    try:
        from turnstate.integrations.agents import copy_agents_state, unwrap_cosmos_item
    except ImportError as exc:
        raise Refused(f"--from agents needs the agents extra: {exc}") from exc
    pairs = items if isinstance(items, dict) else [unwrap_cosmos_item(item) for item in items]
    report = await copy_agents_state(pairs, StateManager(destination), bot=bot, tenant=tenant)
    return report.copied, [f"{key} (not conversation or user state)" for key in report.skipped]
