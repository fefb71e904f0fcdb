"""The document file of :class:`~turnstate.storage.file.FileStorage`: a JSON envelope around the value.

``{"format":1,"key":...,"etag":...,"expires_at":...,"value":{...}}``, with the stored value embedded byte
for byte. The real key is kept inside, so a file whose name is a hash (see
:mod:`turnstate.storage.filenames`) is checked on read, and a file copied or renamed by hand is noticed.
"""

from __future__ import annotations

import os

import msgspec

from turnstate.errors import CorruptDocumentError, InvalidItemError

FORMAT = 1
"""The envelope format this release writes and reads."""

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
"""The largest document file read or written (envelope included); a larger value is refused on write."""


class Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One document file, decoded. ``value`` is the stored value's bytes, undecoded."""

    format: int
    key: str
    etag: str
    expires_at: float | None
    value: msgspec.Raw


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)


def encode_document(key: str, value: bytes, etag: str, expires_at: float | None) -> bytes:
    """The file contents that store ``value`` under ``key``.

    InvalidItemError naming the key when the value is not one JSON object with no whitespace around it, or
    the file would be over :data:`MAX_DOCUMENT_BYTES`.
    """
    value = _checked_value(key, value)
    data = _encoder.encode(Envelope(FORMAT, key, etag, expires_at, msgspec.Raw(value)))
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidItemError(
            key, f"the document would be {len(data)} bytes, over the {MAX_DOCUMENT_BYTES} byte limit"
        )
    return data


def parse_document(key: str | None, path: str, data: bytes) -> Envelope:
    """Decode the document file at ``path``; ``key`` None accepts whatever key it names (hashed names).

    CorruptDocumentError naming the key (or the file name) and the path when it is not a document of this
    format, or belongs to another key.
    """
    shown = key if key is not None else os.path.basename(path)
    try:
        envelope = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptDocumentError(shown, f"not a turnstate document file ({exc})", path) from exc
    except RecursionError:
        raise CorruptDocumentError(shown, "its JSON is nested too deeply to read", path) from None
    if envelope.format != FORMAT:
        raise CorruptDocumentError(
            shown, f"file format {envelope.format} is not supported (this release reads {FORMAT})", path
        )
    if key is not None and envelope.key != key:
        raise CorruptDocumentError(
            key, "the file belongs to another key (copied or renamed by hand, or a hash collision)", path
        )
    if not bytes(envelope.value).startswith(b"{"):
        raise CorruptDocumentError(shown, "the stored value is not a JSON object", path)
    return envelope


def expired(envelope: Envelope, now: float) -> bool:
    """The document's expiry has passed at ``now``."""
    return envelope.expires_at is not None and envelope.expires_at <= now


def _checked_value(key: str, value: bytes) -> bytes:
    value = bytes(value)
    try:
        raw = _raw_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise InvalidItemError(key, f"the value is not valid JSON ({exc})") from exc
    except RecursionError:
        raise InvalidItemError(key, "the value is nested too deeply to be read back") from None
    if not value.startswith(b"{") or len(raw) != len(value):
        raise InvalidItemError(key, "the value must be one JSON object with no whitespace around it")
    return value
