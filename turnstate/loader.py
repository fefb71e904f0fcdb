"""Stored documents to a turn's working data and back: decoding, decrypting, and the document cache.

A manager has one :class:`DocumentLoader`. A turn asks it for each document it read
(:meth:`DocumentLoader.load`) and tells it what each document it writes decodes to
(:meth:`DocumentLoader.remember`), so the next turn that reads the same bytes copies the kept form instead
of decoding (and, with field encryption that remembers plaintext, decrypting) them again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from turnstate import document
from turnstate.cache import DocumentCache
from turnstate.codec import FieldCodec
from turnstate.crypto import FieldEncryption, Sealed


class Loaded(msgspec.Struct, gc=False):
    """A document as a turn works on it."""

    data: dict[str, Any]
    """The fields, decrypted: the turn's own copy."""
    meta: dict[str, msgspec.Raw]
    seen: bytes
    """The redelivery window, as stored."""
    sealed: Sealed | None
    """For a scope with encrypted fields: the envelopes each plaintext came from (None otherwise)."""
    nested: tuple[str, ...] | None
    """The fields holding an object or a list, when the cache knew them (None: not known)."""


class DocumentLoader:
    """Decodes and decrypts documents for one manager, keeping recent ones in its document cache.

    ``codec`` transforms the fields of its scopes (field encryption); ``make_codec``, instead, makes it
    when the first turn needs it (loading keys from a key provider). ``documents`` is the cache, or None.
    """

    __slots__ = ("_encryption", "_lock", "_make_codec", "codec", "documents", "encrypted", "waiting")

    def __init__(
        self,
        documents: DocumentCache | None,
        codec: FieldCodec | None,
        *,
        make_codec: Callable[[], Awaitable[FieldCodec]] | None = None,
    ) -> None:
        self.documents = documents
        self._make_codec = make_codec
        self._lock = asyncio.Lock()
        self.waiting = make_codec is not None
        """True until the codec ``make_codec`` makes is in use: call :meth:`prepare` first."""
        self.codec: FieldCodec | None = None
        self.encrypted: frozenset[str] = frozenset()
        """The scopes whose documents the codec transforms."""
        self._encryption: FieldEncryption | None = None
        self._use(codec)

    def _use(self, codec: FieldCodec | None) -> None:
        self.codec = codec
        self.encrypted = codec.scopes if codec is not None else frozenset()
        # field encryption that remembers plaintext finds the documents it wrote kept decrypted
        self._encryption = (
            codec
            if type(codec) is FieldEncryption and self.documents is not None and codec.remembers_plaintext
            else None
        )

    async def prepare(self) -> None:
        """Make the codec now if it is still to be made; concurrent callers wait for the one making it."""
        async with self._lock:
            make_codec = self._make_codec
            if make_codec is not None:
                self._use(await make_codec())
                self._make_codec = None
                self.waiting = False

    def load(self, scope: str, key: str, value: bytes) -> Loaded:
        """The document of ``scope`` stored as ``value`` under ``key``, decoded and decrypted.

        Raises CorruptDocumentError, or the codec's error (DecryptionError, ...), naming the key.
        """
        documents = self.documents
        if scope not in self.encrypted:
            if documents is None:
                doc = document.decode(key, value)
                return Loaded(doc.data, doc.meta, doc.seen, None, None)
            data, meta, seen, nested = documents.load(key, value)
            return Loaded(data, meta, seen, None, nested)
        encryption = self._encryption
        if encryption is not None:
            assert documents is not None
            hit = documents.opened(key, value, encryption)
            if hit is not None:
                data, meta, seen, kept, nested = hit
                return Loaded(data, meta, seen, kept.copy(), nested)
        if documents is None:
            doc = document.decode(key, value)
            data, meta, seen = doc.data, doc.meta, doc.seen
        else:
            data, meta, seen, _ = documents.load(key, value)
        codec = self.codec
        assert codec is not None
        sealed: Sealed = {}
        return Loaded(codec.decrypt_data(scope, key, data, sealed), meta, seen, sealed, None)

    def remember(
        self,
        scope: str,
        key: str,
        value: bytes,
        *,
        stored: dict[str, Any],
        working: dict[str, Any],
        meta: dict[str, msgspec.Raw],
        seen: bytes,
        data_bytes: bytes,
        sealed: Sealed | None,
        objects: tuple[str, ...] | None,
    ) -> None:
        """Keep what ``value``, about to be written under ``key``, decodes to.

        ``stored``: the fields as stored (envelopes for encrypted ones); ``working``: as the turn holds them
        (plaintext); ``data_bytes``: the encoded stored fields; ``sealed``: the envelopes of an encrypted
        scope; ``objects``: the fields that may hold an object or a list, if known. Both dicts must hold only
        what decoding gives (no tuples, no custom objects): a custom codec's output is not known to, so
        only the built-in field encryption's documents are kept.
        """
        documents = self.documents
        if documents is None:
            return
        if sealed is None:
            documents.keep(key, value, stored, meta, seen, data_bytes=data_bytes, objects=objects)
            return
        codec = self.codec
        if self._encryption is not None:
            # kept decrypted, for this codec's next load of these very bytes
            documents.keep(
                key,
                value,
                working,
                meta,
                seen,
                data_bytes=data_bytes,
                opener=codec,
                state=sealed.copy(),
                objects=objects,
            )
        elif type(codec) is FieldEncryption:
            shared = codec.envelope_fields(scope)
            documents.keep(key, value, stored, meta, seen, data_bytes=data_bytes, shared=shared)
