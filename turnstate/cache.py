"""Recently used documents, kept decoded and reused while their stored bytes stay the same.

Decoding a document's JSON is the largest part of loading a turn, and a bot usually handles several turns
of the same conversation and user in a row. So the engine keeps the decoded form of the documents it has
recently loaded or written, under their storage key together with the exact bytes they decode from. A load
whose bytes differ in any way (another process wrote, the document expired and was recreated) decodes
afresh. Every turn gets its own copy: objects and lists are copied, the immutable leaves (str, int, float,
bool, None) are shared.

Entries hold documents in their stored form, so encrypted fields stay encrypted in memory between turns,
except those kept by an opener: field encryption that remembers plaintext (``decrypted_cache``) keeps the
documents it wrote in their decrypted form, for its own loads only.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import suppress
from typing import Any

import msgspec

from turnstate.document import decode

_Entry = tuple[bytes, dict[str, Any], tuple[str, ...], dict[str, msgspec.Raw], bytes, object, Any]
"""(stored bytes, data, the fields holding an object or a list, meta, seen, opener, what the opener kept
with it): a plain tuple, the cheapest to build and to unpack. Opener None: data is in its stored form."""


def _copy(value: Any) -> Any:
    if value.__class__ is dict:
        return {name: _copy(item) for name, item in value.items()}
    if value.__class__ is list:
        return [_copy(item) for item in value]
    return value


class DocumentCache:
    """Decoded documents by storage key: at most ``max_entries`` of them (the least recently written go
    first), each at most ``max_document_bytes`` in its stored form (larger ones are decoded every time).
    Decoded, a document takes a few times its stored size in memory."""

    __slots__ = ("_entries", "max_document_bytes", "max_entries")

    def __init__(self, max_entries: int, max_document_bytes: int = 16 * 1024) -> None:
        if max_entries < 1 or max_document_bytes < 1:
            raise ValueError(
                "the document cache needs room for at least one document of at least one byte, got "
                f"max_entries={max_entries!r}, max_document_bytes={max_document_bytes!r}"
            )
        self.max_entries = max_entries
        self.max_document_bytes = max_document_bytes
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def load(
        self, key: str, value: bytes
    ) -> tuple[dict[str, Any], dict[str, msgspec.Raw], bytes, tuple[str, ...] | None]:
        """The document stored as ``value`` under ``key``, as (data, meta, seen, objects): a copy of the
        kept one if the bytes are the same, with the fields holding an object or a list; else freshly
        decoded (and kept), with objects None. Raises CorruptDocumentError like
        :func:`turnstate.document.decode`."""
        entry = self._entries.get(key)
        if entry is not None and entry[5] is None and (entry[0] is value or entry[0] == value):
            _, kept, nested, meta, seen, _, _ = entry  # meta and seen are immutable or never edited: shared
            data = kept.copy()
            try:
                for name in nested:
                    data[name] = _copy(data[name])
            except RecursionError:
                pass  # called from deeper down than when it was kept: decode instead
            else:
                return data, meta, seen, nested
        doc = decode(key, value)
        self.keep(key, value, doc.data, doc.meta, doc.seen)
        return doc.data, doc.meta, doc.seen, None

    def opened(
        self, key: str, value: bytes, opener: object
    ) -> tuple[dict[str, Any], dict[str, msgspec.Raw], bytes, Any, tuple[str, ...]] | None:
        """What ``opener`` kept for exactly these bytes (see :meth:`keep`): a copy of the data in the form
        it made of them, meta, seen, the state it kept with them (not copied), and the fields holding an
        object or a list. None if there is none."""
        entry = self._entries.get(key)
        if entry is None or entry[5] is not opener or not (entry[0] is value or entry[0] == value):
            return None
        opened = entry[1].copy()
        try:
            for name in entry[2]:
                opened[name] = _copy(opened[name])
        except RecursionError:
            return None
        return opened, entry[3], entry[4], entry[6], entry[2]

    def keep(
        self,
        key: str,
        value: bytes,
        data: dict[str, Any],
        meta: dict[str, msgspec.Raw],
        seen: bytes,
        data_bytes: bytes | None = None,
        shared: Collection[str] = (),
        opener: object = None,
        state: Any = None,
        objects: tuple[str, ...] | None = None,
    ) -> None:
        """Remember that ``value`` decodes to ``data`` (copied, so the caller may go on changing it).

        ``data`` must be exactly what decoding ``value`` gives: plain JSON values, no tuples or objects.
        ``data_bytes``, the encoded fields if at hand, lets a document without objects or lists skip a walk.
        ``shared`` names fields stored as one envelope each (an object whose only member is a base64 string)
        that nobody edits in place: copies share them instead of copying them (stored form only).

        With ``opener``, ``data`` is instead what ``opener`` (field encryption) made of the stored fields,
        ``data_bytes`` still being the stored fields; only :meth:`opened` with the same opener returns it,
        with ``state``. ``objects``, if known, names every field that may hold an object or a list (more
        is harmless), so none needs looking for.
        """
        entries = self._entries
        if entries.pop(key, None) is None and len(entries) >= self.max_entries:
            # another thread may change the entries meanwhile; then the next keep evicts
            with suppress(KeyError, RuntimeError, StopIteration):
                del entries[next(iter(entries))]
        if len(value) > self.max_document_bytes:
            return
        if objects is not None:
            copy = data.copy()
            try:
                for name in objects:
                    copy[name] = _copy(copy[name])
            except (KeyError, RecursionError):
                return  # a field named is gone, or too deep to copy: not kept
            entries[key] = (value, copy, objects, meta, seen, opener, state)
            return
        # fields with no '{' after the opening one and no '[' hold no object or list (a string holding
        # either only costs the walk below); [r]partition, unlike find, has no optional arguments to parse
        if data_bytes is not None and not data_bytes.partition(b"[")[1]:
            if not data_bytes.rpartition(b"{")[0]:
                entries[key] = (value, data.copy(), (), meta, seen, opener, state)
                return
            if shared and opener is None:
                # each envelope holds exactly one '{' (its text is base64); if they account for every '{'
                # after the opening one, no other field holds an object
                envelopes = 0
                for name in shared:
                    if type(data.get(name)) is dict:
                        envelopes += 1
                if data_bytes.count(b"{") == envelopes + 1:
                    entries[key] = (value, data.copy(), (), meta, seen, None, state)
                    return
        # an opener's fields are walked: once opened, an encrypted field may hold anything
        copy = data.copy()
        nested = []
        try:
            for name, item in data.items():
                cls = type(item)
                if cls is list or (cls is dict and (opener is not None or name not in shared)):
                    copy[name] = _copy(item)
                    nested.append(name)
        except RecursionError:
            return  # too deep to copy from here: such a document is decoded every time
        entries[key] = (value, copy, tuple(nested), meta, seen, opener, state)

    def forget(self, key: str) -> None:
        """Drop what is kept for ``key``."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
