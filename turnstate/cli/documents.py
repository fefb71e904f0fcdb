"""Stored documents as an operator sees them: encrypted fields masked, or decrypted with the key ring.

Which fields are encrypted is read from the document itself (every envelope where it stands), so no list
of encrypted paths is needed: each envelope is authenticated for the storage key, scope and path it was
found at, and one that was moved fails to decrypt.
"""

from __future__ import annotations

from typing import Any

import msgspec

from turnstate.crypto import REDACTED, FieldEncryption, is_envelope
from turnstate.document import decode
from turnstate.keyring import KeyRing
from turnstate.paths import join
from turnstate.reencrypt import default_scope_of


def masked(value: Any) -> Any:
    """A copy of ``value`` with every envelope, however deep (lists included), shown as ``<encrypted>``."""
    if is_envelope(value):
        return REDACTED
    if isinstance(value, dict):
        return {name: masked(item) for name, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def envelope_paths(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """The field paths (below the scope) that hold an envelope."""
    found: list[tuple[str, ...]] = []
    stack: list[tuple[tuple[str, ...], dict[str, Any]]] = [((), data)]
    while stack:
        path, node = stack.pop()
        for name, value in node.items():
            if is_envelope(value):
                found.append((*path, name))
            elif isinstance(value, dict):
                stack.append(((*path, name), value))
    return found


def decrypted(key: str, data: dict[str, Any], keys: KeyRing) -> dict[str, Any]:
    """``data`` with every envelope replaced by its value; DecryptionError naming the key and path if one
    does not decrypt. Envelopes inside lists are not ours and stay masked."""
    scope = default_scope_of(key)
    paths = [join(scope, *path) for path in envelope_paths(data) if "*" not in path]
    if paths:
        encryption = FieldEncryption(paths, keys, allow_plaintext=True, decrypted_cache=0)
        data = encryption.decrypt_data(scope, key, data)
    shown: dict[str, Any] = masked(data)
    return shown


def readable(key: str, value: bytes, keys: KeyRing | None) -> dict[str, Any]:
    """The stored document as JSON-ready data, fields masked (``keys`` None) or decrypted.

    Raises CorruptDocumentError naming ``key`` if ``value`` is not a turnstate document.
    """
    decode(key, value)  # the precise error for anything that is not our document
    document: dict[str, Any] = msgspec.json.decode(value)
    data = document.get("data", {})
    document["data"] = masked(data) if keys is None else decrypted(key, data, keys)
    return document
