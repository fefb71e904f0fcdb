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

import re
from collections.abc import Callable, Mapping
from itertools import accumulate
from typing import Any, NoReturn

import msgspec

from turnstate.errors import CorruptDocumentError, StateValueError
from turnstate.paths import join
from turnstate.redelivery import SeenWindow

FORMAT_VERSION = 1

MAX_DEPTH = 64
"""How deeply objects and lists may nest in a scope's fields: a field holding an object is level 1, an
object or list inside it level 2, and so on. Encoding and decoding recurse once per level (against
Python's recursion limit, 1000 by default), so with 64 a document stays readable and writable from a turn
running more than 900 frames deep, while state nested this deep is already far past what a bot keeps."""

# a document adds two levels around its fields: the envelope and the "data" object
_DOCUMENT_DEPTH = MAX_DEPTH + 2
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 read as signed bytes
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def json_depth(value: bytes) -> int:
    """How deeply the objects and lists of the JSON text ``value`` nest (0 for a scalar), found without
    decoding it, so without recursion."""
    steps = _STRING.sub(b"", value).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def _may_nest_past(value: bytes, depth: int, start: int) -> bool:
    """Whether ``value`` might nest deeper than ``depth``, by quick tests that rule out most documents: no
    bracket after the object opening at ``start`` (memchr, cheap on every turn), or too few brackets."""
    if value.find(b"[", start) < 0 and value.find(b"{", start + 1) < 0:
        return False
    return value.count(b"{") + value.count(b"[") > depth


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
    """Decode stored bytes; raise CorruptDocumentError naming ``key`` if they are not our document, or
    if its fields nest deeper than :data:`MAX_DEPTH`."""
    if _may_nest_past(value, _DOCUMENT_DEPTH, _DATA_AT) and json_depth(value) > _DOCUMENT_DEPTH:
        raise CorruptDocumentError(
            key,
            f"nested too deeply: its objects and lists nest more than {MAX_DEPTH} levels deep, past what "
            "turnstate reads or writes",
        )
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


def changed_fields(stored: bytes, data: dict[str, Any], deepened: str | None = None) -> bytes | None:
    """``data`` encoded as a document's fields, or None if the document ``stored`` holds exactly those.

    A complete JSON object right after the prefix is the whole of ``data``, so a prefix test suffices; a
    document laid out otherwise than :func:`encode` lays it out compares unequal (one unneeded write).
    ``deepened``: the name of the scope, when its handler may have nested its objects or lists deeper in
    place (it was handed them live); fields then nested deeper than :data:`MAX_DEPTH` raise
    StateValueError naming the path.
    """
    try:
        data_bytes = _encode(data)
    except RecursionError:
        _check_depth(data, deepened)
        raise  # not the value: the stack was nearly used up before the commit began
    # set() checked every value it stored, and a load every document: only objects and lists handed out
    # live can have grown deeper
    if deepened and _may_nest_past(data_bytes, MAX_DEPTH + 1, 0) and json_depth(data_bytes) > MAX_DEPTH + 1:
        _check_depth(data, deepened)
    if stored.startswith(data_bytes, _DATA_AT) and stored.startswith(_PREFIX):
        return None
    return data_bytes


def _check_depth(data: dict[str, Any], scope: str | None) -> None:
    """Raise StateValueError naming the first path in ``data`` nested deeper than :data:`MAX_DEPTH`."""
    for name, value in data.items():
        found = _too_deep(value, MAX_DEPTH)
        if found is not None:
            path = join(name, *found)
            raise StateValueError(
                f"{scope}.{path}" if scope else path,
                f"nested too deeply: objects and lists nest more than {MAX_DEPTH} levels deep here (a "
                f"field holding an object is level 1); state holds at most {MAX_DEPTH}. Nothing was "
                "written: flatten the value, or store its deep part as a JSON string",
            )


def _too_deep(value: Any, room: int) -> list[str] | None:
    """The path within ``value`` to an object or list that ``room`` more levels cannot hold, if any."""
    cls = value.__class__
    if cls is dict:
        items: Any = value.items()
    elif cls is list:
        items = enumerate(value)
    else:
        return None
    if room <= 0:
        return []
    for name, item in items:
        found = _too_deep(item, room - 1)
        if found is not None:
            return [str(name), *found]
    return None


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
