"""A persisted scope's bookkeeping for one turn, and which scopes a commit has to write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from turnstate import document
from turnstate.codec import FieldCodec
from turnstate.crypto import Sealed
from turnstate.scopes import ScopeSpec
from turnstate.state import ScopeState

NO_META: dict[str, msgspec.Raw] = {}


class Slot(msgspec.Struct, gc=False):
    """One persisted scope of a turn: its state, and the document it came from, under which ETag."""

    spec: ScopeSpec
    key: str
    scope: ScopeState
    loaded: bytes
    """The document as stored (or last written by this turn)."""
    etag: str | None
    meta: dict[str, msgspec.Raw]
    seen: bytes
    """The redelivery window in ``loaded``."""
    sealed: Sealed | None
    """The envelopes the plaintext of an encrypted scope came from (None for a plain scope)."""
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


Pending = tuple[Slot, bytes, dict[str, Any] | None]
"""A scope to write: its slot, its encoded fields, and the fields in their stored form (None when only
its window changes)."""


def pending(slots: Iterable[Slot], codec: FieldCodec | None, *, forced: bool = False) -> list[Pending]:
    """Each touched slot whose fields, encoded as they would be stored, differ from the stored bytes; with
    those bytes and the fields in their stored form. Slots where the activity is done are left out.

    ``forced``: every slot is written; one whose fields are as stored comes with its stored fields' bytes
    and None for their stored form.
    """
    changed = document.changed_fields
    found: list[Pending] = []
    for slot in slots:
        scope = slot.scope
        if not scope.touched:
            if forced and not slot.done:
                found.append((slot, _stored_fields(slot), None))
            continue  # nothing was written to it and nothing mutable was handed out
        if slot.done:
            continue
        sealed = slot.sealed  # set for every loaded document of an encrypted scope
        if sealed is None and (codec is None or slot.spec.name not in codec.scopes):
            stored = scope.fields
        else:
            assert codec is not None
            # encrypted fields whose value did not change keep their stored envelope, so an unchanged
            # document encodes to exactly the stored bytes
            if sealed is None:
                sealed = slot.sealed = {}
            stored = codec.encrypt_data(slot.spec.name, slot.key, scope.fields, sealed)
        # a scope that handed out live objects or lists may hold them nested deeper than set() allows
        data_bytes = changed(slot.loaded, stored, None if scope.exact else slot.spec.name)
        if data_bytes is not None:
            found.append((slot, data_bytes, stored))
        elif forced:
            found.append((slot, document.encode_data(stored), None))
    return found


def _stored_fields(slot: Slot) -> bytes:
    return document.encode_data(document.decode(slot.key, slot.loaded).data)
