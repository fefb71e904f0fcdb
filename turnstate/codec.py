"""What the turn engine needs from a field codec: the transform between a scope's stored and working data.

Field encryption (:class:`~turnstate.field_encryption.FieldEncryption`) is one; pass your own to
``StateManager(storage, codec=...)``. The engine calls :meth:`FieldCodec.decrypt_data` on each document of
a scope in :attr:`FieldCodec.scopes` it loads, and :meth:`FieldCodec.encrypt_data` on the data it is about
to write, so whatever the codec returns is what storage holds.
"""

from __future__ import annotations

from typing import Any, Protocol

Sealed = dict[tuple[str, ...], tuple[bytes, dict[str, Any], Any]]
"""What a codec noted about one document's fields at load, for its next encryption of that document, by
field path. Field encryption keeps there each envelope as loaded or last made, with the plaintext it holds
and the value decoded from or encrypted into it. A codec may leave it untouched."""


class FieldCodec(Protocol):
    """Transforms the fields of some scopes between their stored and their working form."""

    @property
    def scopes(self) -> frozenset[str]:
        """Names of the scopes this codec transforms; documents of other scopes are stored as they are."""
        ...

    def decrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]:
        """The working form of ``data``, as loaded from ``storage_key``. It may change ``data`` in place
        and return it. ``sealed``, when given, is the same record later passed to :meth:`encrypt_data` for
        this document. Raise :class:`~turnstate.errors.EncryptionError` for data that cannot be read: the
        scope is then unusable for the turn and the document is never rewritten by it."""
        ...

    def encrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]:
        """The stored form of ``data``, about to be written to ``storage_key``, as a new dict: ``data`` and
        the values in it are the turn's working state and must be left unchanged."""
        ...
