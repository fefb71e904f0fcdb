"""The stored document format, versioned from the first release.

A scope's state is stored as one JSON object::

    {"v": 1, "data": {...the scope's fields...}, "seen": "...", "meta": {...}}

``v`` is the format version. ``data`` holds the fields (encrypted fields hold an envelope in place of the
value). ``seen`` is the window of recently committed activity ids (:mod:`turnstate.redelivery`), omitted
when empty. ``meta`` is optional room for other bookkeeping; it is omitted when empty, and entries this
version does not know are preserved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from turnstate.errors import CorruptDocumentError

FORMAT_VERSION = 1


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    v: int
    data: msgspec.Raw
    seen: msgspec.Raw = msgspec.Raw(b"")
    meta: dict[str, msgspec.Raw] = {}


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_data_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
_PREFIX = b'{"v":1,"data":'


class Document(msgspec.Struct, gc=False):
    """A decoded document: its fields, the exact bytes they were stored as, and its metadata.

    Metadata entries stay encoded (``msgspec.Raw``) until someone needs one.
    """

    data: dict[str, Any]
    data_bytes: bytes
    meta: dict[str, msgspec.Raw]
    seen: bytes
    """The redelivery window's characters, exactly as stored (ASCII, nothing to escape)."""


def decode(key: str, value: bytes) -> Document:
    """Decode stored bytes; raise CorruptDocumentError naming ``key`` if they are not our document."""
    try:
        envelope = _envelope_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise CorruptDocumentError(key, f"not a turnstate document ({exc})") from exc
    if envelope.v != FORMAT_VERSION:
        raise CorruptDocumentError(
            key, f"format version {envelope.v} is not supported by this release (it reads {FORMAT_VERSION})"
        )
    raw = bytes(envelope.data)
    try:
        data = _data_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise CorruptDocumentError(key, f"'data' is not a JSON object ({exc})") from exc
    seen = bytes(envelope.seen) if envelope.seen else b""
    if seen:
        # kept as stored and written back verbatim, so it must be a plain string: no escapes, ASCII only
        if seen[0] != 34 or seen.find(b"\\") >= 0 or not seen.isascii():
            raise CorruptDocumentError(key, "'seen' (the redelivery window) is not a plain ASCII string")
        seen = seen[1:-1]
    return Document(data, raw, envelope.meta, seen)


def decode_data(key: str, data_bytes: bytes) -> dict[str, Any]:
    """Decode fields previously produced by :func:`encode_data`."""
    try:
        return _data_decoder.decode(data_bytes)
    except msgspec.DecodeError as exc:
        raise CorruptDocumentError(key, f"'data' is not a JSON object ({exc})") from exc


def encode_data(data: dict[str, Any]) -> bytes:
    """Encode a scope's fields; equal data encodes to equal bytes."""
    return _encoder.encode(data)


def encode(data_bytes: bytes, meta: Mapping[str, Any] | None = None, seen: bytes = b"") -> bytes:
    """Build the stored bytes from encoded fields, the redelivery window and metadata (values may be Raw).

    ``seen`` is written as is: it must hold only ASCII characters that need no JSON escaping.
    """
    if meta:
        if seen:
            return b"".join(
                (_PREFIX, data_bytes, b',"seen":"', seen, b'","meta":', _encoder.encode(meta), b"}")
            )
        return b"".join((_PREFIX, data_bytes, b',"meta":', _encoder.encode(meta), b"}"))
    if seen:
        return b"".join((_PREFIX, data_bytes, b',"seen":"', seen, b'"}'))
    return b"".join((_PREFIX, data_bytes, b"}"))
