"""The field codec protocol: how a scope's fields are transformed between stored and working form."""

from __future__ import annotations

from typing import Any, Protocol

Sealed = dict[tuple[str, ...], tuple[bytes, dict[str, Any], Any]]
"""Where a document's plaintext came from: per encrypted field path, what its envelope held, so a field
whose value did not change keeps its envelope (kept with the turn; see FieldEncryption)."""


class FieldCodec(Protocol):
    """Transforms a scope's fields between their stored and their working form (field encryption)."""

    @property
    def scopes(self) -> frozenset[str]: ...

    def decrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]: ...

    def encrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]: ...
