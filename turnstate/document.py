"""The stored document format, versioned from the first release.

A scope's state is stored as one JSON object::

    {"v": 1, "data": {...the scope's fields...}, "recent": "...", "meta": {...}}

``v`` is the format version. ``data`` holds the fields (encrypted fields hold an envelope in place of the
value). ``recent`` is the window of recent activities and how far each got (:mod:`turnstate.redelivery`),
omitted when empty; documents written before it existed hold ``seen`` instead, a window of activities
that are done, which is read as such and written back as ``recent``. ``meta`` is optional room for other
bookkeeping; it is omitted when empty, and entries this version does not know are preserved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import msgspec

from turnstate.errors import CorruptDocumentError
from turnstate.redelivery import SeenWindow

FORMAT_VERSION = 1


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    v: int
    data: msgspec.Raw
    recent: msgspec.Raw = msgspec.Raw(b"")
    meta: dict[str, msgspec.Raw] = {}


class _Stored(msgspec.Struct, forbid_unknown_fields=False, gc=False):
    v: int
    data: dict[str, Any]
    recent: msgspec.Raw = msgspec.Raw(b"")
    meta: dict[str, msgspec.Raw] = {}
    seen: msgspec.Raw = msgspec.Raw(b"")


_stored_decoder = msgspec.json.Decoder(_Stored)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_data_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
_encode = _encoder.encode
_PREFIX = b'{"v":1,"data":'
_DATA_AT = len(_PREFIX)

EMPTY = _PREFIX + b"{}}"
"""The stored form of a document with no fields."""


class Document(msgspec.Struct, gc=False):
    """A decoded document: its fields and its metadata (entries stay encoded until someone needs one)."""

    data: dict[str, Any]
    meta: dict[str, msgspec.Raw]
    seen: bytes
    """The redelivery window's characters, exactly as stored in ``recent`` (ASCII, nothing to escape)."""


def decode(key: str, value: bytes) -> Document:
    """Decode stored bytes; raise CorruptDocumentError naming ``key`` if they are not our document."""
    try:
        stored = _stored_decoder.decode(value)
    except msgspec.DecodeError:
        _diagnose(key, value)
    except RecursionError as exc:
        raise CorruptDocumentError(
            key, "nested too deeply to decode (past Python's recursion limit)"
        ) from exc
    if stored.v != FORMAT_VERSION:
        _diagnose(key, value)
    seen = _window(key, "recent", stored.recent) if stored.recent else b""
    if stored.seen:
        # written by a release before the "recent" window: every activity in it is done
        seen = SeenWindow.from_legacy(_window(key, "seen", stored.seen)) + seen
    return Document(stored.data, stored.meta, seen)


def _window(key: str, name: str, raw: msgspec.Raw) -> bytes:
    window = bytes(raw)
    # kept as stored and written back verbatim, so it must be a plain string: no escapes, ASCII only
    if window[0] != 34 or window.find(b"\\") >= 0 or not window.isascii():
        raise CorruptDocumentError(key, f"{name!r} (the redelivery window) is not a plain ASCII string")
    return window[1:-1]


def _diagnose(key: str, value: bytes) -> NoReturn:
    """Raise the CorruptDocumentError that says what is wrong with ``value``: the slow, precise path."""
    try:
        envelope = _envelope_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise CorruptDocumentError(key, f"not a turnstate document ({exc})") from exc
    if envelope.v != FORMAT_VERSION:
        raise CorruptDocumentError(
            key, f"format version {envelope.v} is not supported by this release (it reads {FORMAT_VERSION})"
        )
    try:
        _data_decoder.decode(envelope.data)
    except msgspec.DecodeError as exc:
        raise CorruptDocumentError(key, f"'data' is not a JSON object ({exc})") from exc
    raise CorruptDocumentError(key, "not a turnstate document")


def changed_fields(stored: bytes, data: dict[str, Any]) -> bytes | None:
    """``data`` encoded as a document's fields, or None if the document ``stored`` holds exactly those.

    A complete JSON object right after the prefix is the whole of ``data``, so a prefix test suffices; a
    document laid out otherwise than :func:`encode` lays it out compares unequal (one unneeded write).
    """
    data_bytes = _encode(data)
    if stored.startswith(data_bytes, _DATA_AT) and stored.startswith(_PREFIX):
        return None
    return data_bytes


encode_data: Callable[[Any], bytes] = _encoder.encode
"""Encode a scope's fields; equal data encodes to equal bytes."""


def encode(data_bytes: bytes, meta: Mapping[str, Any] | None = None, seen: bytes = b"") -> bytes:
    """Build the stored bytes from encoded fields, the redelivery window and metadata (values may be Raw).

    ``seen`` is written as is: it must hold only ASCII characters that need no JSON escaping.
    """
    if meta:
        if seen:
            return b"".join(
                (_PREFIX, data_bytes, b',"recent":"', seen, b'","meta":', _encoder.encode(meta), b"}")
            )
        return b"".join((_PREFIX, data_bytes, b',"meta":', _encoder.encode(meta), b"}"))
    if seen:
        return b"".join((_PREFIX, data_bytes, b',"recent":"', seen, b'"}'))
    return b"".join((_PREFIX, data_bytes, b"}"))
