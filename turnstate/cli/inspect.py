"""Looking at documents one by one: ``ls``, ``show`` and ``rm``."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TextIO

from turnstate.cli.common import add_output_options, open_storage, scope_prefix, sorted_keys, stored_items
from turnstate.cli.console import CONFLICT, OK, Refused, confirm, duration, emit_json, timestamp
from turnstate.cli.documents import readable
from turnstate.document import EMPTY
from turnstate.errors import PreconditionFailedError
from turnstate.keyring import DEFAULT_KEYS_ENV, KeyRing
from turnstate.storage.base import StoredItem, WriteItem

# rm writes this in place of the document first, conditional on the ETag, then deletes the key; if the
# delete never happens, the empty document expires by itself.
_TOMBSTONE_TTL = 300.0


def _remaining(item: StoredItem, now: float) -> float | None:
    return None if item.expires_at is None else item.expires_at - now


async def ls(args: argparse.Namespace, out: TextIO) -> int:
    prefix = scope_prefix(args.prefix, args.scope)
    async with open_storage(args) as storage:
        keys = await sorted_keys(storage, prefix, "listing documents")
        count = 0
        if not args.json and keys:
            out.write(f"{'SIZE':>8}  {'ETAG':<34}  {'EXPIRES (UTC)':<20}  {'REMAINING':<9}  KEY\n")
        async for batch in stored_items(storage, keys):
            now = time.time()
            for key, item in batch:
                if item is None:
                    continue
                count += 1
                left = _remaining(item, now)
                if args.json:
                    record = {
                        "key": key,
                        "size": len(item.value),
                        "etag": item.etag,
                        "expires_at": item.expires_at,
                        "remaining": left,
                    }
                    emit_json(record, out)
                else:
                    shown = "-" if left is None else duration(left)
                    out.write(
                        f"{len(item.value):>8}  {item.etag:<34}  {timestamp(item.expires_at):<20}  "
                        f"{shown:<9}  {key}\n"
                    )
        if not args.json:
            where = f" under {prefix!r}" if prefix else ""
            out.write(f"{count} document{'' if count == 1 else 's'}{where}\n")
    return OK


def keys_for_decrypt(args: argparse.Namespace) -> KeyRing | None:
    if not args.decrypt:
        return None
    if not os.environ.get(args.keys_env):
        raise Refused(
            f"--decrypt needs the key ring in ${args.keys_env} ('kid:base64key,...', primary first); "
            "it is not set"
        )
    return KeyRing.from_env(args.keys_env)


async def show(args: argparse.Namespace, out: TextIO) -> int:
    keys = keys_for_decrypt(args)
    async with open_storage(args) as storage:
        item = (await storage.read([args.key])).get(args.key)
    if item is None:
        raise Refused(f"no document at key {args.key!r} (absent or expired)", code=1)
    document = readable(args.key, item.value, keys)
    if args.json:
        record = {"key": args.key, "etag": item.etag, "expires_at": item.expires_at, "document": document}
        emit_json(record, out)
        return OK
    left = _remaining(item, time.time())
    expiry = timestamp(item.expires_at) + ("" if left is None else f" (in {duration(left)})")
    out.write(f"key: {args.key}\netag: {item.etag}\nexpires: {expiry}\nsize: {len(item.value)} bytes\n")
    out.write(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False))
    out.write("\n")
    return OK


async def rm(args: argparse.Namespace, out: TextIO) -> int:
    if args.etag is None and not args.force:
        raise Refused(f"rm {args.key!r} needs --etag ETAG (as `show` prints it) or --force")
    if args.etag is not None and args.force:
        raise Refused("rm takes --etag or --force, not both")
    if args.force:
        confirm(f"Delete {args.key!r} whatever it holds?", yes=args.yes, what=f"rm --force {args.key!r}")
    async with open_storage(args) as storage:
        if args.etag is not None:
            try:
                await storage.write({args.key: WriteItem(EMPTY, if_match=args.etag, ttl=_TOMBSTONE_TTL)})
            except PreconditionFailedError:
                found = (await storage.read([args.key])).get(args.key)
                now = "is absent" if found is None else f"has ETag {found.etag!r}"
                raise Refused(
                    f"not deleted: {args.key!r} {now}, not {args.etag!r} (it changed since it was read); "
                    "`show` it again and retry with the new ETag",
                    code=CONFLICT,
                ) from None
        await storage.delete([args.key])
    if args.json:
        emit_json({"deleted": args.key}, out)
    else:
        out.write(f"deleted {args.key!r}\n")
    return OK


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: list[argparse.ArgumentParser]
) -> None:
    p = commands.add_parser(
        "ls",
        parents=common,
        help="list documents with size, ETag and expiry",
        description="List the documents whose keys start with PREFIX (or are in --scope), sorted by key, "
        "with their size in bytes, ETag, expiry (UTC) and the time left.",
    )
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX", help="only keys starting with this")
    p.add_argument("--scope", metavar="NAME", help="only this scope's documents (keys 'NAME/...')")
    add_output_options(p)
    p.set_defaults(run=ls)

    p = commands.add_parser(
        "show",
        parents=common,
        help="print one document as JSON, with its ETag",
        description="Print the stored document at KEY as JSON (the turnstate document format), with its "
        'ETag and expiry. Encrypted fields show as "<encrypted>" unless --decrypt is given and the key '
        "ring is in the environment; key material is never printed.",
    )
    p.add_argument("key", metavar="KEY", help="the document's storage key, as `ls` lists it")
    p.add_argument("--decrypt", action="store_true", help="decrypt encrypted fields with the key ring")
    p.add_argument("--keys-env", default=DEFAULT_KEYS_ENV, help="the variable holding the key ring")
    add_output_options(p)
    p.set_defaults(run=show)

    p = commands.add_parser(
        "rm",
        parents=common,
        help="delete one document, if its ETag is still the one shown",
        description="Delete the document at KEY. With --etag, only if it still has that ETag (as `show` "
        "printed it): a stale ETag is refused (exit 3) and nothing changes. --force deletes whatever is "
        "there, after confirmation.",
    )
    p.add_argument("key", metavar="KEY", help="the document's storage key, as `ls` lists it")
    p.add_argument("--etag", help="the ETag the document must still have")
    p.add_argument("--force", action="store_true", help="delete without checking the ETag")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    add_output_options(p)
    p.set_defaults(run=rm)
