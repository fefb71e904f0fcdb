"""``doctor``: is the storage reachable, how fast, what can it do, and can its documents be read."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

from turnstate.cli.common import add_output_options, describe, open_storage, stored_items
from turnstate.cli.console import CHECK_FAILED, OK, emit_json
from turnstate.cli.documents import readable
from turnstate.document import EMPTY
from turnstate.errors import EncryptionError, StorageError, TurnStateError
from turnstate.keyring import DEFAULT_KEYS_ENV, KeyRing
from turnstate.storage.base import Storage, WriteItem

PROBE_PREFIX = "turnstate-doctor/"
_PROBE_TTL = 60.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def _round_trips(storage: Storage) -> list[Check]:
    probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    checks: list[Check] = []
    try:
        started = time.perf_counter()
        await storage.read([probe])
        read = time.perf_counter() - started
        checks.append(
            Check("connectivity", True, f"{describe(storage)} answered", {"storage": describe(storage)})
        )
        checks.append(
            Check("read latency", True, f"{_ms(read)} (a read of an absent probe key)", {"ms": read * 1000})
        )
    except TurnStateError as exc:
        return [Check("connectivity", False, f"{describe(storage)}: {exc}")]
    try:
        started = time.perf_counter()
        await storage.write({probe: WriteItem(EMPTY, if_match=None, ttl=_PROBE_TTL)})
        await storage.delete([probe])
        took = time.perf_counter() - started
        detail = f"{_ms(took)} (create-only write of probe key {probe!r}, then delete)"
        checks.append(Check("write+delete latency", True, detail, {"ms": took * 1000}))
    except TurnStateError as exc:
        checks.append(Check("write+delete latency", False, f"probe key {probe!r}: {exc}"))
    return checks


def _capabilities(storage: Storage) -> Check:
    flags = dataclasses.asdict(storage.capabilities)
    shown = ", ".join(f"{name}={'yes' if on else 'no'}" for name, on in flags.items())
    return Check("capabilities", True, shown, flags)


async def _settings(storage: Storage) -> Check | None:
    settings_of = getattr(storage, "describe", None)
    if not callable(settings_of):
        return None
    try:
        settings = await settings_of()
    except TurnStateError as exc:
        return Check("container settings", False, str(exc))
    fields = {
        name: getattr(settings, name)
        for name in ("database", "container", "partition_key_paths", "default_ttl", "indexing_mode")
        if hasattr(settings, name)
    }
    notes = []
    if getattr(settings, "native_expiry", True) is False:
        notes.append("TTL is off: expired documents are never deleted by Cosmos DB")
    if getattr(settings, "indexes_only_key", True) is False:
        notes.append("indexes more than /key/? (writes cost more request units)")
    detail = ", ".join(f"{name}={value!r}" for name, value in fields.items())
    if notes:
        detail += "; " + "; ".join(notes)
    return Check("container settings", True, detail, {name: repr(v) for name, v in fields.items()})


def _key_ring(variable: str) -> tuple[Check, KeyRing | None]:
    if not os.environ.get(variable):
        return Check("key ring", True, f"${variable} is not set: encrypted fields are not checked"), None
    try:
        ring = KeyRing.from_env(variable)
    except EncryptionError as exc:
        return Check("key ring", False, str(exc)), None
    detail = f"${variable}: key ids {', '.join(map(repr, ring.ids))}, primary {ring.primary!r}"
    return Check("key ring", True, detail, {"ids": list(ring.ids), "primary": ring.primary}), ring


async def _sample(storage: Storage, size: int, prefix: str, keys: KeyRing | None) -> Check:
    if not storage.capabilities.list_keys:
        return Check("documents", True, f"{type(storage).__name__} cannot list keys: no sample taken")
    skipped_before = getattr(storage, "unreadable_skipped", 0)
    chosen: list[str] = []
    async for key in storage.list_keys(prefix):
        if not key.startswith(PROBE_PREFIX):
            chosen.append(key)
        if len(chosen) >= size:
            break
    decoded = 0
    unreadable: dict[str, str] = {}
    skipped = getattr(storage, "unreadable_skipped", 0) - skipped_before
    if skipped:  # FileStorage: files that do not even name their key, logged one by one
        unreadable["(files skipped while listing)"] = f"{skipped} unreadable files; see the warnings above"
    async for batch in stored_items(storage, sorted(chosen)):
        for key, item in batch:
            if item is None:
                continue
            try:
                readable(key, item.value, keys)
            except (StorageError, EncryptionError) as exc:
                unreadable[key] = str(exc)
            else:
                decoded += 1
    what = "decoded and decrypted" if keys is not None else "decoded"
    detail = f"{decoded} of {decoded + len(unreadable)} sampled documents {what}"
    if unreadable:
        detail += f"; {len(unreadable)} unreadable: " + "; ".join(
            f"{key!r}: {reason}" for key, reason in sorted(unreadable.items())[:5]
        )
    data = {"sampled": decoded + len(unreadable), "readable": decoded, "unreadable": unreadable}
    return Check("documents", not unreadable, detail, data)


async def doctor(args: argparse.Namespace, out: TextIO) -> int:
    ring_check, ring = _key_ring(args.keys_env)
    checks: list[Check] = []
    async with open_storage(args) as storage:
        checks += await _round_trips(storage)
        checks.append(_capabilities(storage))
        if checks[0].ok:
            settings = await _settings(storage)
            if settings is not None:
                checks.append(settings)
        checks.append(ring_check)
        if checks[0].ok:
            try:
                checks.append(await _sample(storage, args.sample, args.prefix, ring))
            except TurnStateError as exc:
                checks.append(Check("documents", False, str(exc)))
    healthy = all(check.ok for check in checks)
    if args.json:
        emit_json(
            {"ok": healthy, "checks": [dataclasses.asdict(check) for check in checks]},
            out,
        )
    else:
        for check in checks:
            out.write(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}\n")
        out.write("all checks passed\n" if healthy else "some checks FAILED\n")
    return OK if healthy else CHECK_FAILED


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: list[argparse.ArgumentParser]
) -> None:
    p = commands.add_parser(
        "doctor",
        parents=common,
        help="check connectivity, latency, settings, keys and a sample of documents",
        description="Check that the storage answers (timing a read, and a write and delete of a probe "
        "key), show its capabilities (and a Cosmos DB container's settings), check the key ring in the "
        "environment, and decode a sample of documents (decrypting them when the ring is given). Exit "
        "status 1 if any check fails.",
    )
    p.add_argument("--sample", type=int, default=100, metavar="N", help="documents to decode (default 100)")
    p.add_argument("--prefix", default="", help="sample only keys starting with this")
    p.add_argument("--keys-env", default=DEFAULT_KEYS_ENV, help="the variable holding the key ring")
    add_output_options(p)
    p.set_defaults(run=doctor)
