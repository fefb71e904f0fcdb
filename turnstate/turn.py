"""The turn engine: load every scope in one read, commit changed scopes in one write, merge on conflict.

:class:`~turnstate.manager.StateManager` holds configuration; a turn's working data lives in a
:class:`Turn`::

    manager = StateManager(MemoryStorage())
    async with manager.turn(activity) as state:
        state.conversation.incr("count")
    # committed here if the block succeeded; discarded on any BaseException (cancellation included)

Load: one ``Storage.read`` for every persisted scope. A document whose bytes are exactly those the
manager's :class:`~turnstate.cache.DocumentCache` kept is copied from it instead of decoded; a commit
tells the cache what the bytes it writes decode to.

Commit: each persisted scope is encoded once, as it would be stored (encrypted fields whose value did not
change keep their stored envelope); only scopes whose bytes differ from the stored ones are written, all in
one ``Storage.write`` with the loaded ETag as precondition. If another writer committed
first, the conflicting scopes are re-read and this turn's changes are merged field by field onto the stored
documents (see :mod:`turnstate.merge`), then the write is retried, up to ``max_commit_attempts``. From
the second conflict on, a retry first waits a jittered, doubling backoff and only then re-reads, so the
write follows its read at once. Across scopes: on a storage with atomic batches a conflict writes nothing
and the whole batch is retried after merging; on one without, scopes that did not conflict are written at once
and only the conflicting ones are merged and retried. Either way a scope is written whole (never
half-merged), and a merge conflict under the "raise" policy leaves that scope as it was stored.

Turns of one manager that commit to the same documents take turns (:mod:`turnstate.queue`): one that had
to wait merges onto what the one before it wrote, then writes.

Redelivery (:mod:`turnstate.redelivery`): every document a commit writes records the activity, as in
progress for a checkpoint, as done (with the number of documents it is done in) for the final commit,
which also marks done the documents its checkpoints wrote. At load, an activity done in as many documents
as its records say is a duplicate (``Turn.duplicate``); one recorded only in some is resumed
(``Turn.resumed``): documents where it is done keep what they hold, the rest take this run's changes. A
delivery racing another one of the same activity finds the other's record when it re-reads after a
conflict: where the other is done, this one's changes are dropped
(:class:`~turnstate.errors.DuplicateActivityError` if nothing of its own was left to write); where the
other only checkpointed, this one stops with :class:`~turnstate.errors.ConcurrentDeliveryError`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from turnstate import document
from turnstate.config import TurnConfig
from turnstate.crypto import Sealed
from turnstate.errors import (
    CommitRetriesExhaustedError,
    ConcurrentDeliveryError,
    CorruptDocumentError,
    DuplicateActivityError,
    EncryptionError,
    MergeConflictError,
    PreconditionFailedError,
    TurnClosedError,
)
from turnstate.keys import ids_of
from turnstate.merge import merge
from turnstate.redelivery import SeenWindow, done_mark
from turnstate.scopes import ScopeSpec
from turnstate.state import ScopeState, TurnState, UnreadableScope
from turnstate.storage.base import WriteItem

if TYPE_CHECKING:
    from turnstate.manager import FieldCodec

log = logging.getLogger("turnstate")

_MAX_BACKOFF = 1.0
_NO_META: dict[str, msgspec.Raw] = {}


class _Slot(msgspec.Struct, gc=False):
    """A persisted scope's bookkeeping for one turn: what was loaded, under which ETag."""

    spec: ScopeSpec
    key: str
    scope: ScopeState
    loaded: bytes
    """The document as stored (or last written by this turn)."""
    etag: str | None
    meta: dict[str, msgspec.Raw]
    seen: bytes
    sealed: Sealed | None
    nested: tuple[str, ...] | None = None
    """The fields that held an object or a list at load, when the document cache said so (an encrypted
    scope's as decrypted)."""
    done: bool = False
    """This activity is already done in this document: the turn's changes to it are dropped."""
    progress: bool = False
    """The document holds this activity's in-progress record (a checkpoint's): the final commit marks it
    done, even if the turn changed nothing in it since."""

    # the loaded bytes and the sealed record hold field values (plaintext of encrypted fields in the
    # latter), so neither a repr nor a pretty-printer may show them
    def __repr__(self) -> str:
        return f"<turn slot for {self.key!r}>"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("key", self.key)]


OnConflict = Literal["merge", "raise"] | None
"""A commit's conflict handling: merge and retry, raise, or (None) the manager's setting."""

_Pending = tuple[_Slot, bytes, dict[str, Any] | None]
"""A scope to write: its slot, its encoded fields, and the fields in their stored form (None when only
its window changes)."""

_Written = tuple[_Slot, bytes, bytes]
"""A scope in a write batch: its slot, the document written, and the redelivery window in it."""


class Turn:
    """One turn's state: load on enter, commit on a clean exit, discard on any exception."""

    __slots__ = (
        "_activity",
        "_closed",
        "_config",
        "_delivery",
        "_done_before",
        "_on_conflict",
        "_recorded",
        "_slots",
        "_token",
        "activity_id",
        "duplicate",
        "resumed",
        "state",
    )

    def __init__(self, config: TurnConfig, activity: Any, on_conflict: OnConflict = None) -> None:
        self._config = config
        self._activity = activity
        self._on_conflict = on_conflict
        self._slots: list[_Slot] = []
        self._closed = False
        self._token = b""
        self.state: TurnState | None = None
        self.activity_id: str | None = None
        self.duplicate = False
        """True when this activity is done in every document its earlier deliveries changed: a redelivery
        the handler should not repeat."""
        self.resumed = False
        """True when an earlier delivery of this activity checkpointed or committed part of its changes and
        this one must finish them (documents where it is done keep what they hold)."""
        self._recorded = False
        """Some document holds a record of this activity (found at load, or written by a checkpoint)."""
        self._done_before = 0
        self._delivery = b""

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                await self.commit(self._on_conflict)
            finally:
                self.close()
        else:
            self.discard()

    async def load(self) -> TurnState:
        """Read every available persisted scope in one storage call and build the turn's state."""
        config = self._config
        if config.loader.waiting:
            await config.loader.prepare()
        activity = self._activity
        ids = ids_of(activity)
        activity_id = self.activity_id = ids.activity
        token = self._token = (
            SeenWindow.token(activity_id) if activity_id is not None and config.window is not None else b""
        )
        plan = config.plan(ids, activity)
        scopes = dict(plan.unavailable)
        items = await config.storage.read(plan.keys) if plan.keys else {}
        guard = config.guard
        slots = self._slots
        loader = config.loader
        contains = SeenWindow.contains
        searched = None  # documents written by the same turns (a user in a 1:1 chat) hold equal windows
        recorded = False
        unreadable = 0
        for spec, key in plan.wanted:
            name = spec.name
            item = items.get(key)
            if item is None:
                scope = ScopeState(name, key, {}, guard)
                slots.append(_Slot(spec, key, scope, document.EMPTY, None, _NO_META, b"", None))
                scopes[name] = scope
                continue
            try:
                loaded = loader.load(name, key, item.value)
            except (CorruptDocumentError, EncryptionError) as exc:
                # this scope raises when used; the others work, and the document is never written
                scopes[name] = UnreadableScope(name, exc)
                unreadable += 1
                log.warning(
                    "turnstate: scope %r is unusable this turn: %s",
                    name,
                    exc,
                    extra={"key": key, "scope": name},
                )
                continue
            seen = loaded.seen
            if token and seen != searched:
                searched = seen
                if contains(seen, token):
                    recorded = True
            scope = scopes[name] = ScopeState(name, key, loaded.data, guard)
            slots.append(
                _Slot(
                    spec, key, scope, item.value, item.etag, loaded.meta, seen, loaded.sealed, loaded.nested
                )
            )
        config.stats.turns += 1
        if recorded:
            self._recall(unreadable)
        if self.duplicate:
            config.stats.duplicates += 1
            log.info(
                "turnstate: activity %r was already committed; redelivery detected at load",
                activity_id,
                extra={"activity_id": activity_id},
            )
        self.state = TurnState(scopes, self.checkpoint, activity_id, self.resumed)
        config.commits.open_turns += 1
        return self.state

    __aenter__ = load

    def _recall(self, unreadable: int) -> None:
        """Work out from the loaded windows how far earlier deliveries of this activity got.

        A done record says in how many documents the activity is done in all; it is a duplicate when that
        many loaded documents hold one. Otherwise the documents where it is done keep what they hold and
        the handler runs again for the rest. A document without a record of it, whose window may have
        trimmed one (it is full, and its oldest record is no older than the activity's done records), is
        treated as done too: its change is never applied twice. So is each of the ``unreadable`` documents,
        whose windows cannot be read and which this turn never writes.
        """
        token = self._token
        window = self._config.window
        assert window is not None
        found = [(slot, SeenWindow.find(slot.seen, token)) for slot in self._slots]
        done = [f for _, f in found if f is not None and f.done]
        counts = [f.documents for f in done]
        since = min((f.stamp for f in done), default=None)
        for slot, f in found:
            if f is not None:
                slot.done = f.done
                slot.progress = not f.done
            elif since is not None and window.may_have_dropped(slot.seen, since):
                slot.done = True
        self._done_before = len(done)
        self._recorded = True
        if done and (None in counts or len(done) + unreadable >= max(c for c in counts if c is not None)):
            self.duplicate = True
        else:
            self.resumed = True

    async def checkpoint(self) -> None:
        """Write the changes made so far, recording the activity as in progress (``state.save()``).

        A redelivery after a checkpoint runs the handler again on the checkpointed state, with
        ``state.resumed`` set; only the final commit marks the activity done.
        """
        await self.commit(final=False)

    async def commit(self, on_conflict: OnConflict = None, *, final: bool = True) -> None:
        """The turn's final commit: write every scope whose encoded fields changed since load (or the last
        checkpoint), recording the activity as done in each (``final=False``: see :meth:`checkpoint`).

        On conflict the scopes are re-read, merged and retried, backing off from the second conflict.
        ``on_conflict`` overrides the manager's setting for this call.
        """
        if self._closed:
            raise TurnClosedError("this turn")
        config = self._config
        codec = config.loader.codec
        pending = _pending(self._slots, codec)
        record = b""
        if self._token:  # only set when the manager keeps redelivery windows
            if final and self._recorded:
                pending = self._with_progress(pending)
            if not pending:
                return
            window = config.window
            assert window is not None
            record = (
                window.record(self._token, done_mark(self._done_before + len(pending)))
                if final
                else self._progress()
            )
        elif not pending:
            return
        if config.commits.open_turns > 1:  # another turn of this manager may be committing the same documents
            await self._queued(pending, record, final, on_conflict)
        else:
            await self._write(pending, record, final, on_conflict)

    async def _write(
        self,
        pending: list[_Pending],
        record: bytes,
        final: bool,
        on_conflict: OnConflict,
    ) -> None:
        config = self._config
        items, batch = self._items(pending, record)
        try:
            etags = await config.storage.write(items)
        except PreconditionFailedError as exc:
            await self._resolve(exc, pending, items, batch, record, final, on_conflict)
            return
        self._written(batch, etags, final)
        config.stats.commits += 1
        config.stats.writes += len(pending)

    async def _queued(
        self,
        pending: list[_Pending],
        record: bytes,
        final: bool,
        on_conflict: OnConflict,
    ) -> None:
        """Write ``pending`` once no other commit of this manager holds any of its documents."""
        keys = [slot.key for slot, _, _ in pending]
        queue = self._config.commits
        if not queue.enter_now(keys):
            await queue.enter(keys)
            try:
                pending = await self._after_queue(pending, record, final, on_conflict)
            except BaseException:
                queue.leave(keys)
                raise
        try:
            if pending:
                await self._write(pending, record, final, on_conflict)
        finally:
            queue.leave(keys)

    async def _after_queue(
        self,
        pending: list[_Pending],
        record: bytes,
        final: bool,
        on_conflict: OnConflict,
    ) -> list[_Pending]:
        """What is left to write after waiting for another commit of this manager to the same documents."""
        config = self._config
        if (on_conflict or config.on_conflict) == "raise":
            return pending  # the write conflicts and the caller re-runs the turn
        # the turn before may have written these documents: merge onto what is stored, then write once
        slots = [slot for slot, _, _ in pending]
        dropped = await self._rebase(slots, final)
        left = _pending(slots, config.loader.codec, forced=final and bool(record))
        if not left and dropped:
            raise self._duplicate_at_commit(slots[0].key)
        return left

    async def _resolve(
        self,
        conflict: PreconditionFailedError,
        pending: list[_Pending],
        items: dict[str, WriteItem],
        batch: list[_Written],
        record: bytes,
        final: bool,
        on_conflict: OnConflict,
    ) -> None:
        """Settle a write of ``pending`` that conflicted: re-read, merge and write again until it holds,
        backing off from the second conflict on."""
        config = self._config
        attempt = 1
        wrote: list[str] = []
        dropped = False
        cycle = 0.0
        while True:
            exc = conflict
            config.stats.conflicts += 1
            log.info(
                "turnstate: commit conflict on %s (attempt %d)",
                exc.keys,
                attempt,
                extra={"keys": exc.keys, "attempt": attempt},
            )
            self._written([b for b in batch if b[0].key in exc.written], exc.written, final)
            wrote += (key for key in items if key in exc.written)
            if (on_conflict or config.on_conflict) == "raise" and not wrote:
                raise exc  # the caller re-runs the turn; once part of it is written, the rest is merged
            unwritten = [slot for slot, _, _ in pending if slot.key not in exc.written]
            if attempt >= config.max_commit_attempts:
                config.stats.gave_up += 1
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
            config.stats.retries += 1
            if attempt > 1:
                # back off before re-reading, so the retry writes right after its read; the window grows
                # from what one read-and-write cycle took, so it suits the storage's latency
                unit = max(config.backoff, time.monotonic() - cycle)
                await asyncio.sleep(random.uniform(0, min(unit * 2 ** (attempt - 1), _MAX_BACKOFF)))
            cycle = time.monotonic()
            if await self._rebase([slot for slot in unwritten if slot.key in exc.keys], final):
                dropped = True
                unwritten = [slot for slot in unwritten if not slot.done]
            # a slot of the final commit is written even if the merge left its fields as stored: its
            # window must record the activity as done
            pending = _pending(unwritten, config.loader.codec, forced=final and bool(record))
            if not pending:
                if dropped and not wrote:
                    raise self._duplicate_at_commit(exc.keys[0]) from None
                return
            attempt += 1
            items, batch = self._items(pending, record)
            try:
                etags = await config.storage.write(items)
            except PreconditionFailedError as again:
                conflict = again
                continue
            self._written(batch, etags, final)
            config.stats.commits += 1
            config.stats.writes += len(pending)
            return

    def _progress(self) -> bytes:
        """The in-progress record (and its companion naming this delivery) a checkpoint writes."""
        window = self._config.window
        assert window is not None
        if not self._delivery:
            self._delivery = SeenWindow.delivery()
        return window.progress(self._token, self._delivery)

    def _with_progress(self, pending: list[_Pending]) -> list[_Pending]:
        """``pending`` and every other document holding this activity's in-progress record."""
        changed = {slot.key for slot, _, _ in pending}
        rest = [s for s in self._slots if s.progress and not s.done and s.key not in changed]
        return pending + _pending(rest, self._config.loader.codec, forced=True) if rest else pending

    def _duplicate_at_commit(self, key: str) -> DuplicateActivityError:
        self._config.stats.duplicates += 1
        log.info(
            "turnstate: activity %r was committed by a concurrent delivery; dropping this one",
            self.activity_id,
            extra={"activity_id": self.activity_id},
        )
        return DuplicateActivityError(self.activity_id or "", key)

    def _items(self, pending: list[_Pending], record: bytes) -> tuple[dict[str, WriteItem], list[_Written]]:
        """The write batch for ``pending``, and each slot with the document and window it will then hold."""
        config = self._config
        window = config.window if record else None
        scrub = self._token if self._recorded else b""
        encode = document.encode
        loader = config.loader
        items: dict[str, WriteItem] = {}
        batch: list[_Written] = []
        before: bytes | None = None  # the last window extended, and the result
        after = b""
        for slot, data_bytes, stored in pending:
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
            # only data known to be in its decoded form qualifies
            scope = slot.scope
            if stored is not None and scope._exact:  # (None: rewritten only for its window)
                # if the turn set only scalars at top-level names, its objects and lists are where the
                # cache said they were at load
                loader.remember(
                    slot.spec.name,
                    key,
                    value,
                    stored=stored,
                    working=scope._data,
                    meta=slot.meta,
                    seen=window_text,
                    data_bytes=data_bytes,
                    sealed=slot.sealed,
                    objects=None if scope._shaped else slot.nested,
                )
        return items, batch

    def _written(self, done: list[_Written], etags: Mapping[str, str], final: bool) -> None:
        for slot, value, window_text in done:
            slot.loaded = value
            slot.etag = etags[slot.key]
            slot.seen = window_text
            if not final and self._token:
                slot.progress = self._recorded = True

    async def _rebase(self, slots: list[_Slot], final: bool) -> bool:
        """Re-read conflicting scopes and merge this turn's changes onto what is stored now.

        Returns whether a concurrent delivery of this activity turned out to be done in some of them: their
        changes are dropped (a checkpoint raises DuplicateActivityError instead). A concurrent delivery's
        checkpoint raises ConcurrentDeliveryError: only one delivery may carry an activity forward.
        """
        config = self._config
        fresh = await config.storage.read([slot.key for slot in slots])
        codec = config.loader.codec
        merged: list[
            tuple[_Slot, dict[str, Any], bytes, str | None, document.Document | None, Sealed | None]
        ] = []
        for slot in slots:
            item = fresh.get(slot.key)
            doc = None
            sealed: Sealed | None = None
            if item is None:
                theirs: dict[str, Any] = {}
                theirs_bytes, etag = document.EMPTY, None
            else:
                doc = document.decode(slot.key, item.value)
                theirs, theirs_bytes, etag = doc.data, item.value, item.etag
                if codec is not None and slot.spec.name in codec.scopes:
                    sealed = {}
                    theirs = codec.decrypt_data(slot.spec.name, slot.key, theirs, sealed)
            if (
                self._token
                and doc is not None
                and SeenWindow.contains(doc.seen, self._token)
                and self._other_delivery(slot, doc.seen, final)
            ):
                continue
            base = document.decode(slot.key, slot.loaded).data
            if codec is not None and slot.spec.name in codec.scopes:
                base = codec.decrypt_data(slot.spec.name, slot.key, base)
            result = merge(
                slot.spec.name, base, slot.scope._data, theirs, config.policies, slot.scope._deltas
            )
            if result.conflicts:
                config.stats.merge_conflicts += 1
                log.info(
                    "turnstate: merge conflict under policy 'raise' in %r at %s",
                    slot.key,
                    result.conflicts,
                    extra={"key": slot.key, "paths": result.conflicts},
                )
                raise MergeConflictError(slot.key, result.conflicts)
            merged.append((slot, result.data, theirs_bytes, etag, doc, sealed))
        dropped = len(merged) < len(slots)
        for slot, data, theirs_bytes, etag, doc, sealed in merged:
            slot.sealed = sealed
            slot.nested = None
            config.stats.merges += 1
            slot.scope._data.clear()
            slot.scope._data.update(data)
            slot.scope._touched = True
            slot.scope._exact = False  # a merge function may have returned any value
            slot.loaded, slot.etag = theirs_bytes, etag
            slot.meta, slot.seen = (doc.meta, doc.seen) if doc is not None else (_NO_META, b"")
        return dropped

    def _other_delivery(self, slot: _Slot, stored: bytes, final: bool) -> bool:
        """Whether another delivery of this activity is done in ``slot``'s document, whose window is now
        ``stored``; if so the slot is marked done. Raises if that delivery is still in progress there."""
        token = self._token
        theirs = SeenWindow.find(stored, token)
        ours = SeenWindow.find(slot.seen, token)
        assert theirs is not None
        if theirs.done:
            if ours is not None and ours.done:
                return False  # as it was at load
            if not final:
                raise self._duplicate_at_commit(slot.key)
            slot.done = True
            log.info(
                "turnstate: activity %r is done in %r by a concurrent delivery; keeping what it wrote",
                self.activity_id,
                slot.key,
                extra={"activity_id": self.activity_id, "key": slot.key},
            )
            return True
        if ours is not None and not ours.done and ours.delivery == theirs.delivery:
            return False  # the in-progress record this turn loaded or wrote itself
        raise ConcurrentDeliveryError(self.activity_id or "", slot.key)

    def discard(self) -> None:
        """Drop every uncommitted change and close the state."""
        if not self._closed:
            self._config.stats.discards += 1
        self.close()

    def close(self) -> None:
        """End the turn: further use of its state raises TurnClosedError."""
        if not self._closed and self.state is not None:
            self._config.commits.open_turns -= 1
        self._closed = True
        if self.state is not None:
            self.state._close()


def _pending(slots: Iterable[_Slot], codec: FieldCodec | None, *, forced: bool = False) -> list[_Pending]:
    """Each touched slot whose fields, encoded as they would be stored, differ from the stored bytes; with
    those bytes and the fields in their stored form. Slots where the activity is done are left out.

    ``forced``: every slot is written; one whose fields are as stored comes with its stored fields' bytes
    and None for their stored form.
    """
    changed = document.changed_fields
    pending: list[_Pending] = []
    for slot in slots:
        scope = slot.scope
        if not scope._touched:
            if forced and not slot.done:
                pending.append((slot, _stored_fields(slot), None))
            continue  # nothing was written to it and nothing mutable was handed out
        if slot.done:
            continue
        sealed = slot.sealed  # set for every loaded document of an encrypted scope
        if sealed is None and (codec is None or slot.spec.name not in codec.scopes):
            stored = scope._data
        else:
            assert codec is not None
            # encrypted fields whose value did not change keep their stored envelope, so an unchanged
            # document encodes to exactly the stored bytes
            if sealed is None:
                sealed = slot.sealed = {}
            stored = codec.encrypt_data(slot.spec.name, slot.key, scope._data, sealed)
        data_bytes = changed(slot.loaded, stored)
        if data_bytes is not None:
            pending.append((slot, data_bytes, stored))
        elif forced:
            pending.append((slot, document.encode_data(stored), None))
    return pending


def _stored_fields(slot: _Slot) -> bytes:
    return document.encode_data(document.decode(slot.key, slot.loaded).data)
