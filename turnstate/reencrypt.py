"""Eager re-encryption: rewrite every stored document whose encrypted fields are not under the primary key.

Run it after promoting a new primary key on every instance (and after turning encryption on for existing
data, with ``allow_plaintext=True``): documents are otherwise re-encrypted only when a turn writes them.
Once it reports no failures, the old key can be dropped from the ring.

Keys are processed in sorted order, so an interrupted run resumes with ``resume_after=<last key done>``.
Each rewrite is conditional on the ETag read; when a live bot writes the same document meanwhile, the
document is read again and retried. A rewrite keeps the document's expiry unless told otherwise.
"""

from __future__ import annotations

import bisect
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from turnstate.document import decode, encode, encode_data
from turnstate.errors import (
    CommitRetriesExhaustedError,
    CorruptDocumentError,
    EncryptionError,
    PreconditionFailedError,
    UnsupportedStorageError,
)
from turnstate.field_encryption import FieldEncryption
from turnstate.storage.base import Storage, StoredItem, WriteItem


@dataclass(frozen=True, slots=True)
class ReencryptProgress:
    """Reported after each key: ``done`` of ``total`` keys in this run, the last one being ``last_key``."""

    done: int
    total: int
    last_key: str


@dataclass(slots=True)
class ReencryptReport:
    """What a run did. ``scanned`` = ``rewritten + already_current + skipped + failed``.

    ``skipped``: keys whose scope has no encrypted paths, or that vanished or expired before they could be
    rewritten.
    ``failures`` maps each failed key to the error message (messages never carry field values).
    ``last_key``: the last key handled, to pass as ``resume_after`` if the run is interrupted.
    """

    scanned: int = 0
    rewritten: int = 0
    already_current: int = 0
    skipped: int = 0
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    last_key: str | None = None


def default_scope_of(key: str) -> str:
    """The scope of a storage key: the part before the first ``/`` (``"user/..."`` -> ``"user"``)."""
    return key.split("/", 1)[0]


_REWRITTEN, _CURRENT, _SKIPPED = "rewritten", "current", "skipped"


async def _rewrite(
    storage: Storage,
    encryption: FieldEncryption,
    key: str,
    scope: str,
    item: StoredItem | None,
    ttl: float | None,
    clock: Callable[[], float],
    max_attempts: int,
) -> str:
    for _ in range(max_attempts):
        if item is None:
            return _SKIPPED
        lifetime = ttl
        if lifetime is None and item.expires_at is not None:
            lifetime = item.expires_at - clock()  # what is left of it: the rewrite must not extend it
            if lifetime <= 0:
                return _SKIPPED
        document = decode(key, item.value)
        if not encryption.needs_reencrypt(scope, document.data):
            return _CURRENT
        data = encryption.decrypt_data(scope, key, document.data)
        value = encode(encode_data(encryption.encrypt_data(scope, key, data)), document.meta, document.seen)
        try:
            await storage.write({key: WriteItem(value, if_match=item.etag, ttl=lifetime)})
        except PreconditionFailedError:
            item = (await storage.read([key])).get(key)
            continue
        return _REWRITTEN
    raise CommitRetriesExhaustedError([key], max_attempts)


def _check(storage: Storage, max_attempts: int, batch_size: int) -> None:
    if not storage.capabilities.list_keys:
        raise UnsupportedStorageError(type(storage).__name__, "list_keys", "re-encrypting stored documents")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")


def _count(report: ReencryptReport, key: str, outcome: str | None) -> None:
    """Count what became of ``key`` (None: it failed, and its failure is recorded)."""
    report.scanned += 1
    if outcome == _REWRITTEN:
        report.rewritten += 1
    elif outcome == _CURRENT:
        report.already_current += 1
    elif outcome == _SKIPPED:
        report.skipped += 1
    else:
        report.failed += 1
    report.last_key = key


async def reencrypt(
    storage: Storage,
    encryption: FieldEncryption,
    *,
    ttl_of: Callable[[str], float | None] | None = None,
    prefix: str = "",
    scope_of: Callable[[str], str] = default_scope_of,
    progress: Callable[[ReencryptProgress], object] | None = None,
    resume_after: str | None = None,
    max_attempts: int = 5,
    batch_size: int = 100,
    clock: Callable[[], float] = time.time,
) -> ReencryptReport:
    """Re-encrypt, under ``encryption``'s primary key, every document below ``prefix`` that needs it.

    Each rewritten document keeps the expiry it had (written with the lifetime it has left, measured
    with ``clock``, Unix seconds like the storage's; one that has none keeps none; one found expired is
    skipped), unless ``ttl_of`` is given and ``ttl_of(key)`` returns a TTL in seconds to write it with
    instead (None: keep its expiry). ``scope_of(key)`` names the scope a key belongs to. ``progress`` is
    called (and awaited, if it returns an awaitable) after every key. Documents that cannot be decrypted
    or keep conflicting are counted in ``failed`` and listed in ``failures``; the run goes on. Storage
    failures propagate; resume with ``resume_after`` set to the last key reported.

    Raises UnsupportedStorageError if the storage does not declare ``list_keys``.
    """
    _check(storage, max_attempts, batch_size)
    keys = sorted({key async for key in storage.list_keys(prefix)})
    if resume_after is not None:
        keys = keys[bisect.bisect_right(keys, resume_after) :]
    report = ReencryptReport()
    scopes = encryption.scopes
    total = len(keys)
    for start in range(0, total, batch_size):
        batch = [(key, scope_of(key)) for key in keys[start : start + batch_size]]
        wanted = [key for key, scope in batch if scope in scopes]
        items = await storage.read(wanted) if wanted else {}
        for key, scope in batch:
            if scope not in scopes:
                outcome = _SKIPPED
            else:
                try:
                    ttl = ttl_of(key) if ttl_of is not None else None
                    outcome = await _rewrite(
                        storage, encryption, key, scope, items.get(key), ttl, clock, max_attempts
                    )
                except (EncryptionError, CorruptDocumentError, CommitRetriesExhaustedError) as exc:
                    report.failures[key] = str(exc)
                    outcome = None
            _count(report, key, outcome)
            if progress is not None:
                result = progress(ReencryptProgress(report.scanned, total, key))
                if inspect.isawaitable(result):
                    await result
    return report
