"""One delivery of an activity, and what the windows say earlier or concurrent deliveries of it did.

The records themselves are :mod:`turnstate.redelivery`'s; this module decides from them whether a
delivery is a duplicate, which documents it must leave alone, and what its commits record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from turnstate.errors import ConcurrentDeliveryError
from turnstate.redelivery import SeenWindow, done_mark
from turnstate.slot import Slot

log = logging.getLogger("turnstate")


class Delivery(msgspec.Struct, gc=False):
    """This delivery of the activity ``activity_id`` (None: an activity without an id, never recorded).

    Made by :func:`delivery_of`.
    """

    activity_id: str | None
    token: bytes
    """What its records are searched by (empty when there is nothing to record: no id, or redelivery
    detection is off)."""
    duplicate: bool = False
    """The activity is done in every document its earlier deliveries changed."""
    resumed: bool = False
    """An earlier delivery got part of the way; this one finishes."""
    recorded: bool = False
    """Some document holds a record of the activity (found at load, or written by a checkpoint)."""
    done_before: int = 0
    """How many loaded documents say the activity is done in them."""
    name: bytes = b""
    """This delivery's name in its in-progress records (made by its first checkpoint)."""

    def recall(self, slots: Sequence[Slot], window: SeenWindow, unreadable: int) -> None:
        """Work out from the loaded windows how far earlier deliveries of this activity got.

        A done record says in how many documents the activity is done in all; it is a duplicate when that
        many loaded documents hold one. Otherwise the documents where it is done keep what they hold and
        the handler runs again for the rest. A document without a record of it, whose window may have
        trimmed one (it is full, and its oldest record is no older than the activity's done records), is
        treated as done too: its change is never applied twice. So is each of the ``unreadable``
        documents, whose windows cannot be read and which the turn never writes.
        """
        found = [(slot, SeenWindow.find(slot.seen, self.token)) for slot in slots]
        done = [f for _, f in found if f is not None and f.done]
        counts = [f.documents for f in done]
        since = min((f.stamp for f in done), default=None)
        for slot, f in found:
            if f is not None:
                slot.done = f.done
                slot.progress = not f.done
            elif since is not None and window.may_have_dropped(slot.seen, since):
                slot.done = True
        self.done_before = len(done)
        self.recorded = True
        if done and (None in counts or len(done) + unreadable >= max(c for c in counts if c is not None)):
            self.duplicate = True
        else:
            self.resumed = True

    def record(self, window: SeenWindow, final: bool, writes: int) -> bytes:
        """The record a commit writing ``writes`` documents adds to each: done for the final commit (in how
        many documents, counting those done before), in progress for a checkpoint."""
        if final:
            return window.record(self.token, done_mark(self.done_before + writes))
        if not self.name:
            self.name = SeenWindow.delivery()
        return window.progress(self.token, self.name)

    def wrote(self, slot: Slot) -> None:
        """``slot``'s document now holds this delivery's in-progress record (a checkpoint wrote it)."""
        slot.progress = self.recorded = True

    def done_elsewhere(self, slot: Slot, stored: bytes) -> bool:
        """Whether another delivery of this activity is done in ``slot``'s document, whose window is now
        ``stored``. Raises ConcurrentDeliveryError if another delivery checkpointed there instead: only one
        delivery may carry an activity forward."""
        token = self.token
        theirs = SeenWindow.find(stored, token)
        if theirs is None:
            return False
        ours = SeenWindow.find(slot.seen, token)
        if theirs.done:
            if ours is not None and ours.done:
                return False  # as it was at load
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


def delivery_of(activity_id: str | None, window: SeenWindow | None) -> Delivery:
    """The delivery of ``activity_id``, recorded in ``window`` (None: redelivery detection is off)."""
    token = SeenWindow.token(activity_id) if activity_id is not None and window is not None else b""
    return Delivery(activity_id, token)
