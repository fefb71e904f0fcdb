"""The window of recently committed activity ids kept in a document's metadata.

Stored under ``meta["seen"]`` as one JSON string, oldest entry first, entries separated by ``|``, each
``<id> <unix seconds>``; ``\\``, ``|`` and space inside ids are escaped as ``\\\\``, ``\\p`` and ``\\s``.
Checking and appending work on the encoded bytes, so a turn never decodes the window; it is decoded and
trimmed (by count and age) only when it has grown to twice its size.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec

SEEN = "seen"

_encode = msgspec.json.encode
_decode_str = msgspec.json.Decoder(str)


def _encoded_id(activity_id: str) -> bytes:
    if "\\" in activity_id or "|" in activity_id or " " in activity_id:
        activity_id = activity_id.replace("\\", "\\\\").replace("|", "\\p").replace(" ", "\\s")
    return _encode(activity_id)[1:-1]


class SeenWindow:
    """Remembers at least the last ``size`` activity ids per document, for up to ``max_age`` seconds."""

    __slots__ = ("max_age", "size")

    def __init__(self, size: int = 32, max_age: float = 3600.0) -> None:
        if size < 1:
            raise ValueError(f"the redelivery window must hold at least 1 id, got {size!r}")
        if not max_age > 0:
            raise ValueError(f"the redelivery window's max age must be positive, got {max_age!r}")
        self.size = size
        self.max_age = max_age

    def contains(self, meta: Mapping[str, msgspec.Raw], activity_id: str) -> bool:
        """Whether ``activity_id`` was committed to this document (within the window)."""
        raw = meta.get(SEEN)
        if raw is None:
            return False
        encoded = bytes(raw)
        needle = _encoded_id(activity_id) + b" "
        return encoded.startswith(b'"' + needle) or (b"|" + needle) in encoded

    def remember(self, meta: Mapping[str, msgspec.Raw], activity_id: str) -> dict[str, msgspec.Raw]:
        """Metadata with ``activity_id`` appended to the window."""
        now = int(time.time())
        entry = _encoded_id(activity_id) + b" " + str(now).encode()
        raw = meta.get(SEEN)
        encoded = bytes(raw) if raw is not None else b'""'
        if len(encoded) < 3 or encoded[0:1] != b'"' or encoded[-1:] != b'"':
            seen = b'"' + entry + b'"'
        elif encoded.count(b"|") < 2 * self.size:
            seen = encoded[:-1] + b"|" + entry + b'"'
        else:
            seen = self._trimmed(encoded, now)[:-1] + entry + b'"'
        return {**meta, SEEN: msgspec.Raw(seen)}

    def _trimmed(self, encoded: bytes, now: int) -> bytes:
        try:
            entries = _decode_str.decode(encoded)
        except msgspec.DecodeError:
            return b'""'  # an unreadable window only weakens redelivery detection; the data is intact
        horizon = now - self.max_age
        kept = []
        for line in entries.split("|"):
            _, _, stamp = line.rpartition(" ")
            if stamp.isdigit() and int(stamp) >= horizon:
                kept.append(line)
        kept = kept[max(0, len(kept) - (self.size - 1)) :]
        return _encode("".join(line + "|" for line in kept))
