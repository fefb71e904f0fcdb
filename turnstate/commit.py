"""Writing a turn's changed scopes: one conditional write; on conflict, re-read, merge and write again.

Each changed scope is written with the ETag it was loaded (or last written) with as precondition, all in
one ``Storage.write``. If another writer committed first, the conflicting scopes are re-read and this
turn's changes merged field by field onto them (:mod:`turnstate.merge`), then written again, up to
``max_commit_attempts``; from the second conflict on, a retry first waits a jittered, doubling backoff. On a
storage with atomic batches a conflict writes nothing; on one without, the scopes that did not conflict are
written at once. Either way a scope is written whole, never half-merged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine, Mapping
from typing import Any

import msgspec

from turnstate import document
from turnstate.config import TurnConfig
from turnstate.crypto import Sealed
from turnstate.delivery import Delivery
from turnstate.errors import (
    CommitRetriesExhaustedError,
    DuplicateActivityError,
    MergeConflictError,
    PreconditionFailedError,
)
from turnstate.merge import merge
from turnstate.redelivery import SeenWindow
from turnstate.slot import NO_META, Pending, Slot, pending
from turnstate.storage.base import StoredItem, WriteItem

log = logging.getLogger("turnstate")

_MAX_BACKOFF = 1.0

_Written = tuple[Slot, bytes, bytes]
"""A scope in a write batch: its slot, the document written, and the redelivery window in it."""


class Commit(msgspec.Struct, gc=False):
    """One commit of a turn: the final one, or a checkpoint (``final`` False)."""

    config: TurnConfig
    delivery: Delivery
    final: bool
    raising: bool
    """On conflict, raise PreconditionFailedError (while nothing is written) instead of merging."""
    record: bytes
    """The redelivery record it adds to every document it writes (empty: none)."""

    def run(self, changed: list[Pending]) -> Coroutine[Any, Any, None]:
        """Write ``changed`` (await the result), queueing behind other commits of the manager while more
        than one turn of it is open."""
        if self.config.commits.open_turns > 1:
            return self._queued(changed)
        return self._write(changed)

    async def _write(self, changed: list[Pending]) -> None:
        config = self.config
        items, batch = self._items(changed)
        try:
            etags = await config.storage.write(items)
        except PreconditionFailedError as exc:
            await self._resolve(exc, changed, items, batch)
            return
        self._written(batch, etags)
        config.stats.commits += 1
        config.stats.writes += len(changed)

    async def _queued(self, changed: list[Pending]) -> None:
        """Write ``changed`` once no other commit of this manager holds any of its documents."""
        keys = [slot.key for slot, _, _ in changed]
        queue = self.config.commits
        if not queue.enter_now(keys):
            await queue.enter(keys)
            try:
                changed = await self._after_queue(changed)
            except BaseException:
                queue.leave(keys)
                raise
        try:
            if changed:
                await self._write(changed)
        finally:
            queue.leave(keys)

    async def _after_queue(self, changed: list[Pending]) -> list[Pending]:
        """What is left to write after waiting for another commit of this manager to the same documents."""
        if self.raising:
            return changed  # the write conflicts and the caller re-runs the turn
        # the commit before may have written these documents: merge onto what is stored, then write once
        slots = [slot for slot, _, _ in changed]
        dropped = await self._rebase(slots)
        left = self._still(slots)
        if not left and dropped:
            raise self._duplicate(slots[0].key)
        return left

    async def _resolve(
        self,
        conflict: PreconditionFailedError,
        changed: list[Pending],
        items: dict[str, WriteItem],
        batch: list[_Written],
    ) -> None:
        """Settle a write of ``changed`` that conflicted: re-read, merge and write again until it holds."""
        config = self.config
        attempt = 1
        wrote: list[str] = []
        dropped = False
        cycle = 0.0
        while True:
            exc = conflict
            self._written([b for b in batch if b[0].key in exc.written], exc.written)
            wrote += (key for key in items if key in exc.written)
            unwritten = self._after_conflict(exc, changed, attempt, wrote)
            if attempt > 1:
                await _back_off(config.backoff, attempt, cycle)
            cycle = time.monotonic()
            if await self._rebase([slot for slot in unwritten if slot.key in exc.keys]):
                dropped = True
                unwritten = [slot for slot in unwritten if not slot.done]
            changed = self._still(unwritten)
            if not changed:
                if dropped and not wrote:
                    raise self._duplicate(exc.keys[0]) from None
                return
            attempt += 1
            items, batch = self._items(changed)
            try:
                etags = await config.storage.write(items)
            except PreconditionFailedError as again:
                conflict = again
                continue
            self._written(batch, etags)
            config.stats.commits += 1
            config.stats.writes += len(changed)
            return

    def _after_conflict(
        self, exc: PreconditionFailedError, changed: list[Pending], attempt: int, wrote: list[str]
    ) -> list[Slot]:
        """Count and log a conflict; raise if the commit is not to retry; else the slots left to write."""
        stats = self.config.stats
        stats.conflicts += 1
        if self.config.telemetry is not None:
            self.config.telemetry.conflict(exc.keys, attempt)
        log.info(
            "turnstate: commit conflict on %s (attempt %d)",
            exc.keys,
            attempt,
            extra={"keys": exc.keys, "attempt": attempt},
        )
        if self.raising and not wrote:
            raise exc  # the caller re-runs the turn; once part of it is written, the rest is merged
        unwritten = [slot for slot, _, _ in changed if slot.key not in exc.written]
        if attempt >= self.config.max_commit_attempts:
            stats.gave_up += 1
            log.warning(
                "turnstate: gave up committing %s after %d attempts; written: %s",
                exc.keys,
                attempt,
                wrote,
                extra={"keys": exc.keys, "attempts": attempt, "written": wrote},
            )
            raise CommitRetriesExhaustedError(
                exc.keys, attempt, written=wrote, unwritten=[slot.key for slot in unwritten]
            ) from exc
        stats.retries += 1
        return unwritten

    def _still(self, slots: list[Slot]) -> list[Pending]:
        # a slot of the final commit is written even if the merge left its fields as stored: its window
        # must record the activity as done
        return pending(slots, self.config.loader.codec, forced=self.final and bool(self.record))

    def _duplicate(self, key: str) -> DuplicateActivityError:
        self.config.stats.duplicates += 1
        activity_id = self.delivery.activity_id
        log.info(
            "turnstate: activity %r was committed by a concurrent delivery; dropping this one",
            activity_id,
            extra={"activity_id": activity_id},
        )
        return DuplicateActivityError(activity_id or "", key)

    def _items(self, changed: list[Pending]) -> tuple[dict[str, WriteItem], list[_Written]]:
        """The write batch for ``changed``, and each slot with the document and window it will then hold."""
        config = self.config
        record = self.record
        window = config.window if record else None
        delivery = self.delivery
        scrub = delivery.token if delivery.recorded else b""
        encode = document.encode
        loader = config.loader
        items: dict[str, WriteItem] = {}
        batch: list[_Written] = []
        before: bytes | None = None  # the last window extended, and the result
        after = b""
        for slot, data_bytes, stored in changed:
            key = slot.key
            seen = slot.seen
            if window is None:
                window_text = seen
            else:
                if scrub:  # an earlier record of this activity gives way to the new one
                    seen = SeenWindow.without(seen, scrub)
                if seen == before:  # documents written by the same turns hold equal windows
                    window_text = after
                else:
                    before = seen
                    window_text = after = window.remember(before, record)
            value = encode(data_bytes, slot.meta, window_text)
            items[key] = WriteItem(value, slot.etag, slot.spec.ttl)
            batch.append((slot, value, window_text))
            # the cache maps bytes to what they decode to, so it may learn these before the write succeeds;
            # only data known to be in its decoded form qualifies (None: rewritten only for its window)
            scope = slot.scope
            if stored is not None and scope.exact:
                loader.remember(
                    slot.spec.name,
                    key,
                    value,
                    stored=stored,
                    working=scope.fields,
                    meta=slot.meta,
                    seen=window_text,
                    data_bytes=data_bytes,
                    sealed=slot.sealed,
                    # if the turn set only scalars at top-level names, its objects and lists are where
                    # the cache said they were at load
                    objects=None if scope.shaped else slot.nested,
                )
        return items, batch

    def _written(self, done: list[_Written], etags: Mapping[str, str]) -> None:
        delivery = self.delivery
        checkpoint = not self.final and delivery.token
        for slot, value, window_text in done:
            slot.loaded = value
            slot.etag = etags[slot.key]
            slot.seen = window_text
            if checkpoint:
                delivery.wrote(slot)

    async def _rebase(self, slots: list[Slot]) -> bool:
        """Re-read conflicting scopes and merge this turn's changes onto what is stored now.

        Returns whether a concurrent delivery of this activity turned out to be done in some of them: their
        changes are dropped (a checkpoint raises DuplicateActivityError instead).
        """
        fresh = await self.config.storage.read([slot.key for slot in slots])
        merged = []
        for slot in slots:
            result = self._merged(slot, fresh.get(slot.key))
            if result is not None:
                merged.append(result)
        for slot, data, item, doc, sealed in merged:
            self.config.stats.merges += 1
            slot.scope.replace(data)
            slot.sealed, slot.nested = sealed, None
            slot.loaded, slot.etag = (item.value, item.etag) if item is not None else (document.EMPTY, None)
            slot.meta, slot.seen = (doc.meta, doc.seen) if doc is not None else (NO_META, b"")
        return len(merged) < len(slots)

    def _merged(
        self, slot: Slot, item: StoredItem | None
    ) -> tuple[Slot, dict[str, Any], StoredItem | None, document.Document | None, Sealed | None] | None:
        """``slot``'s changes merged onto ``item``, what is stored now; None if a concurrent delivery of
        this activity is done there (the slot is then marked done)."""
        config = self.config
        codec = config.loader.codec
        encrypted = codec is not None and slot.spec.name in codec.scopes
        doc = None
        sealed: Sealed | None = None
        theirs: dict[str, Any] = {}
        if item is not None:
            doc = document.decode(slot.key, item.value)
            theirs = doc.data
            if encrypted:
                assert codec is not None
                sealed = {}
                theirs = codec.decrypt_data(slot.spec.name, slot.key, theirs, sealed)
            if self.delivery.token and self.delivery.done_elsewhere(slot, doc.seen):
                if not self.final:
                    raise self._duplicate(slot.key)
                slot.done = True
                return None
        base = document.decode(slot.key, slot.loaded).data
        if encrypted:
            assert codec is not None
            base = codec.decrypt_data(slot.spec.name, slot.key, base)
        result = merge(slot.spec.name, base, slot.scope.fields, theirs, config.policies, slot.scope.deltas)
        if result.conflicts:
            config.stats.merge_conflicts += 1
            log.info(
                "turnstate: merge conflict under policy 'raise' in %r at %s",
                slot.key,
                result.conflicts,
                extra={"key": slot.key, "paths": result.conflicts},
            )
            raise MergeConflictError(slot.key, result.conflicts)
        return slot, result.data, item, doc, sealed


async def _back_off(backoff: float, attempt: int, cycle: float) -> None:
    """Wait before re-reading, so the retry writes right after its read. The window grows from what one
    read-and-write cycle took (started at ``cycle``), so it suits the storage's latency."""
    unit = max(backoff, time.monotonic() - cycle)
    await asyncio.sleep(random.uniform(0, min(unit * 2 ** (attempt - 1), _MAX_BACKOFF)))
