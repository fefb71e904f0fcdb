"""The turn engine: load every scope in one read, hand the handler its state, commit on success.

:class:`~turnstate.manager.StateManager` holds configuration; a turn's working data lives in a
:class:`Turn`::

    manager = StateManager(MemoryStorage())
    async with manager.turn(activity) as state:
        state.conversation.incr("count")
    # committed here if the block succeeded; discarded on any BaseException (cancellation included)

Load: one ``Storage.read`` for every persisted scope; each document is decoded and decrypted by the
manager's :class:`~turnstate.loader.DocumentLoader` (which reuses what it kept of documents it saw last).
A document that cannot be read spoils only its own scope. The windows in the documents say whether an
earlier delivery of the activity got anywhere (:mod:`turnstate.delivery`).

Commit: the scopes whose fields changed are written by a :class:`~turnstate.commit.Commit`, with the
activity's record in each; a checkpoint (``state.save()``) records it in progress, the final commit done.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Literal

from turnstate import document
from turnstate.commit import Commit
from turnstate.config import TurnConfig
from turnstate.delivery import delivery_of
from turnstate.errors import CorruptDocumentError, EncryptionError, TurnClosedError
from turnstate.keys import ids_of
from turnstate.redelivery import SeenWindow
from turnstate.slot import NO_META, Pending, Slot, pending
from turnstate.state import ScopeState, TurnState, UnreadableScope

log = logging.getLogger("turnstate")

OnConflict = Literal["merge", "raise"] | None
"""A commit's conflict handling: merge and retry, raise, or (None) the manager's setting."""


_NOT_LOADED = delivery_of(None, None)
"""A turn's delivery until it loads: no id, nothing recorded (never changed)."""


class Turn:
    """One turn's state: load on enter, commit on a clean exit, discard on any exception."""

    __slots__ = ("_activity", "_closed", "_config", "_delivery", "_on_conflict", "_slots", "state")

    def __init__(self, config: TurnConfig, activity: Any, on_conflict: OnConflict = None) -> None:
        self._config = config
        self._activity = activity
        self._on_conflict = on_conflict
        self._slots: list[Slot] = []
        self._closed = False
        self._delivery = _NOT_LOADED
        self.state: TurnState | None = None

    @property
    def activity_id(self) -> str | None:
        return self._delivery.activity_id

    @property
    def duplicate(self) -> bool:
        """True when this activity is done in every document its earlier deliveries changed: a redelivery
        the handler should not repeat."""
        return self._delivery.duplicate

    @property
    def resumed(self) -> bool:
        """True when an earlier delivery of this activity checkpointed or committed part of its changes and
        this one must finish them (documents where it is done keep what they hold)."""
        return self._delivery.resumed

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
        delivery = self._delivery = delivery_of(ids.activity, config.window)
        plan = config.plan(ids, activity)
        scopes = dict(plan.unavailable)
        items = await config.storage.read(plan.keys) if plan.keys else {}
        guard = config.guard
        slots = self._slots
        loader = config.loader
        token = delivery.token
        contains = SeenWindow.contains
        searched = None  # documents written by the same turns (a user in a 1:1 chat) hold equal windows
        recorded = False
        unreadable = 0
        for spec, key in plan.wanted:
            name = spec.name
            item = items.get(key)
            if item is None:
                scope = scopes[name] = ScopeState(name, key, {}, guard)
                slots.append(Slot(spec, key, scope, document.EMPTY, None, NO_META, b"", None))
                continue
            try:
                loaded = loader.load(name, key, item.value)
            except (CorruptDocumentError, EncryptionError) as exc:
                # this scope raises when used; the others work, and the document is never written
                scopes[name] = UnreadableScope(name, exc)
                unreadable += 1
                log.warning("turnstate: scope %r is unusable this turn: %s", name, exc, extra={"key": key})
                continue
            seen = loaded.seen
            if token and seen != searched:
                searched = seen
                recorded = recorded or contains(seen, token)
            scope = scopes[name] = ScopeState(name, key, loaded.data, guard)
            sealed, nested = loaded.sealed, loaded.nested
            slots.append(Slot(spec, key, scope, item.value, item.etag, loaded.meta, seen, sealed, nested))
        config.stats.turns += 1
        if recorded:
            assert config.window is not None
            delivery.recall(slots, config.window, unreadable)
            if delivery.duplicate:
                config.stats.duplicates += 1
                log.info(
                    "turnstate: activity %r was already committed; redelivery detected at load",
                    delivery.activity_id,
                    extra={"activity_id": delivery.activity_id},
                )
        self.state = TurnState(scopes, self.checkpoint, delivery.activity_id, delivery.resumed)
        config.commits.open_turns += 1
        return self.state

    __aenter__ = load

    async def checkpoint(self) -> None:
        """Write the changes made so far, recording the activity as in progress (``state.save()``).

        A redelivery after a checkpoint runs the handler again on the checkpointed state, with
        ``state.resumed`` set; only the final commit marks the activity done.
        """
        await self.commit(final=False)

    async def commit(self, on_conflict: OnConflict = None, *, final: bool = True) -> None:
        """The turn's final commit: write every scope whose encoded fields changed since load (or the last
        checkpoint), recording the activity as done in each (``final=False``: see :meth:`checkpoint`).

        On conflict the scopes are re-read, merged and retried (:mod:`turnstate.commit`). ``on_conflict``
        overrides the manager's setting for this call.
        """
        if self._closed:
            raise TurnClosedError("this turn")
        config = self._config
        changed = pending(self._slots, config.loader.codec)
        delivery = self._delivery
        record = b""
        if delivery.token:  # only set when the manager keeps redelivery windows
            if final and delivery.recorded:
                changed = self._with_progress(changed)
            if not changed:
                return
            assert config.window is not None
            record = delivery.record(config.window, final, len(changed))
        elif not changed:
            return
        mode = on_conflict or config.on_conflict
        await Commit(config, delivery, final, mode == "raise", record).run(changed)

    def _with_progress(self, changed: list[Pending]) -> list[Pending]:
        """``changed`` and every other document holding this activity's in-progress record."""
        keys = {slot.key for slot, _, _ in changed}
        rest = [s for s in self._slots if s.progress and not s.done and s.key not in keys]
        return changed + pending(rest, self._config.loader.codec, forced=True) if rest else changed

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
            self.state.close()
