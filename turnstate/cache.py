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

from collections.abc import Collection, Iterator
from contextlib import suppress
from typing import Any

import msgspec

from turnstate.document import decode


class KeptDocument(msgspec.Struct, gc=False):
    """One kept document (read it, never change it)."""

    stored: bytes
    """The exact bytes it decodes from."""
    data: dict[str, Any]
    """Its fields: in their stored form, or as ``opener`` made them."""
    nested: tuple[str, ...]
    """The fields holding an object or a list (copied for each turn; the rest is shared)."""
    meta: dict[str, msgspec.Raw]
    seen: bytes
    opener: object
    """None, or the field encryption that kept ``data`` decrypted for its own loads."""
    state: Any
    """What ``opener`` kept with it."""


def _copy(value: Any) -> Any:
    if value.__class__ is dict:
        return {name: _copy(item) for name, item in value.items()}
    if value.__class__ is list:
        return [_copy(item) for item in value]
    return value


def _flat(data: dict[str, Any], data_bytes: bytes, shared: Collection[str]) -> bool:
    """Whether ``data``, encoded as ``data_bytes``, holds no object or list but the ``shared`` envelopes."""
    # fields with no '{' after the opening one and no '[' hold no object or list (a string holding either
    # only costs a walk); [r]partition, unlike find, has no optional arguments to parse
    if data_bytes.partition(b"[")[1]:
        return False
    if not data_bytes.rpartition(b"{")[0]:
        return True
    if not shared:
        return False
    # each envelope holds exactly one '{' (its text is base64); if they account for every '{' after the
    # opening one, no other field holds an object
    envelopes = 0
    for name in shared:
        if type(data.get(name)) is dict:
            envelopes += 1
    return data_bytes.count(b"{") == envelopes + 1


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
        self._entries: dict[str, KeptDocument] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        """The keys of the kept documents, oldest first."""
        return iter(list(self._entries))

    def get(self, key: str) -> KeptDocument | None:
        """What is kept for ``key``, for inspection."""
        return self._entries.get(key)

    def load(
        self, key: str, value: bytes
    ) -> tuple[dict[str, Any], dict[str, msgspec.Raw], bytes, tuple[str, ...] | None]:
        """The document stored as ``value`` under ``key``, as (data, meta, seen, objects): a copy of the
        kept one if the bytes are the same, with the fields holding an object or a list; else freshly
        decoded (and kept), with objects None. Raises CorruptDocumentError like
        :func:`turnstate.document.decode`."""
        kept = self._entries.get(key)
        if kept is not None and kept.opener is None and (kept.stored is value or kept.stored == value):
            data = kept.data.copy()
            nested = kept.nested
            try:
                for name in nested:
                    data[name] = _copy(data[name])
            except RecursionError:
                pass  # called from deeper down than when it was kept: decode instead
            else:
                # meta and seen are immutable or never edited: shared
                return data, kept.meta, kept.seen, nested
        doc = decode(key, value)
        self.keep(key, value, doc.data, doc.meta, doc.seen)
        return doc.data, doc.meta, doc.seen, None

    def opened(
        self, key: str, value: bytes, opener: object
    ) -> tuple[dict[str, Any], dict[str, msgspec.Raw], bytes, Any, tuple[str, ...]] | None:
        """What ``opener`` kept for exactly these bytes (see :meth:`keep`): a copy of the data in the form
        it made of them, meta, seen, the state it kept with them (not copied), and the fields holding an
        object or a list. None if there is none."""
        kept = self._entries.get(key)
        if kept is None or kept.opener is not opener or not (kept.stored is value or kept.stored == value):
            return None
        opened = kept.data.copy()
        try:
            for name in kept.nested:
                opened[name] = _copy(opened[name])
        except RecursionError:
            return None
        return opened, kept.meta, kept.seen, kept.state, kept.nested

    def keep(
        self,
        key: str,
        value: bytes,
        data: dict[str, Any],
        meta: dict[str, msgspec.Raw],
        seen: bytes,
        *,
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
            entries[key] = KeptDocument(value, copy, objects, meta, seen, opener, state)
            return
        if data_bytes is not None and _flat(data, data_bytes, shared if opener is None else ()):
            entries[key] = KeptDocument(value, data.copy(), (), meta, seen, opener, state)
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
        entries[key] = KeptDocument(value, copy, tuple(nested), meta, seen, opener, state)

    def forget(self, key: str) -> None:
        """Drop what is kept for ``key``."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
