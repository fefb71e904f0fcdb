"""Every error turnstate raises, in one tree.

::

    TurnStateError
    ├── StateError                  misuse of ctx.state during a turn
    │   ├── PathError               malformed path, or a path through a non-object (also ValueError)
    │   ├── UnknownScopeError       path or name refers to a scope that is not registered
    │   ├── MissingIdError          the activity lacks the id a scope is keyed by
    │   ├── StateValueError         a value that cannot be stored (also ValueError)
    │   │   └── SecretValueError    the value looks like a credential (bearer token, JWT, API key)
    │   ├── StateTypeError          a stored value does not convert to the requested type (also TypeError)
    │   └── TurnClosedError         state used after its turn ended
    ├── StorageError                a storage backend failed
    │   ├── InvalidKeyError         empty or unusable storage key (also ValueError)
    │   ├── InvalidItemError        a write item that cannot be stored as asked (also ValueError)
    │   ├── StorageUnavailableError the backend could not be reached; nothing was committed by this call
    │   ├── CorruptDocumentError    a stored document is not one of ours, or is damaged
    │   └── UnsupportedStorageError the storage lacks a capability the operation needs (also TypeError)
    ├── ConflictError               concurrent writers disagreed
    │   ├── PreconditionFailedError an ETag precondition failed (also StorageError)
    │   ├── MergeConflictError      both writers changed a field whose policy is "raise"
    │   ├── DuplicateActivityError  a concurrent delivery of the activity completed it first
    │   ├── ConcurrentDeliveryError a concurrent delivery of the activity checkpointed first
    │   └── CommitRetriesExhaustedError  the commit kept conflicting past its retry bound
    └── EncryptionError             field encryption failed or cannot start
        ├── KeyRingError            missing, malformed or duplicate keys (also ValueError)
        ├── DecryptionError         an encrypted field is tampered, moved, malformed or under an unknown key
        └── PlaintextFieldError     plaintext where a field is declared encrypted

Messages name the key or path with ``!r`` and, where there is one, the fix. No message ever carries a
stored value, and no message or repr ever carries key material.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class TurnStateError(Exception):
    """Base of every error raised by turnstate."""


class StateError(TurnStateError):
    """ctx.state was used in a way that cannot work."""


class PathError(StateError, ValueError):
    """A state path is malformed, or walks through a value that is not an object."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"state path {path!r}: {reason}")


class UnknownScopeError(StateError, LookupError):
    """A path or scope name refers to a scope that was never registered."""

    def __init__(
        self, name: str, known: Iterable[str], path: str | None = None, *, disabled: bool = False
    ) -> None:
        self.name = name
        self.path = path
        where = f" in path {path!r}" if path is not None else ""
        if disabled:
            super().__init__(
                f"state scope {name!r}{where} is not enabled for this bot; add it to "
                "StateManager(builtin_scopes=...) to load and store it"
            )
            return
        names = ", ".join(sorted(known))
        super().__init__(
            f"unknown state scope {name!r}{where}; registered scopes: {names}. "
            "Register a custom scope with Scope(...) or use 'temp.<name>' for per-turn data."
        )


class MissingIdError(StateError, LookupError):
    """The activity does not carry the id a scope is keyed by, so the scope has no storage key."""

    def __init__(self, scope: str, missing: str) -> None:
        self.scope = scope
        self.missing = missing
        super().__init__(
            f"state scope {scope!r} is unavailable for this activity: it has no {missing}. "
            "Refusing to fall back to a shared key; check the activity, or avoid this scope for it."
        )


class StateValueError(StateError, ValueError):
    """A value cannot be stored as JSON; raised by set(), before anything is sent or saved."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"cannot store the value at {path!r}: {reason}")


class StateTypeError(StateError, TypeError):
    """A stored value does not convert to the type asked for."""

    def __init__(self, path: str, expected: object, found: str, detail: str = "") -> None:
        self.path = path
        self.expected = expected
        self.found = found
        name = getattr(expected, "__name__", None) or repr(expected)
        extra = f" ({detail})" if detail else ""
        super().__init__(f"state path {path!r} holds {found}, which is not a valid {name}{extra}")


class TurnClosedError(StateError):
    """State was used after its turn committed or was discarded."""

    def __init__(self, what: str = "turn state") -> None:
        super().__init__(
            f"{what} was used after its turn ended; keep state access inside the handler or middleware"
        )


class StorageError(TurnStateError):
    """A storage backend failed to do what was asked."""


class InvalidKeyError(StorageError, ValueError):
    """A storage key is empty or cannot be stored by this backend."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"invalid storage key {key!r}: {reason}")


class InvalidItemError(StorageError, ValueError):
    """A write item cannot be stored as asked (for example a TTL that is not positive)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"cannot write key {key!r}: {reason}")


class StorageUnavailableError(StorageError):
    """The backend could not be reached or timed out.

    Each key of a failed write was written completely or not at all, but which is unknown: re-read before
    writing again (a retried turn does, since it loads afresh and writes under an ETag precondition).
    """


class CorruptDocumentError(StorageError):
    """A stored document is damaged or was not written by turnstate; state is not reset silently."""

    def __init__(self, key: str, reason: str, location: str | None = None) -> None:
        self.key = key
        self.location = location
        where = f" at {location}" if location else ""
        super().__init__(
            f"stored document for key {key!r}{where} is unreadable: {reason}. "
            "It was left untouched; inspect or delete it to let this key work again."
        )


class ConflictError(TurnStateError):
    """Concurrent writers disagreed about a document."""


class PreconditionFailedError(ConflictError, StorageError):
    """One or more writes failed their ETag precondition (HTTP 412 in Cosmos terms).

    ``keys`` are the keys whose precondition failed. ``written`` maps keys that a non-atomic backend did
    write in the same call to their new ETags; an atomic backend writes none and leaves it empty.
    """

    def __init__(self, keys: Iterable[str], written: Mapping[str, str] | None = None) -> None:
        self.keys = sorted(keys)
        self.written = dict(written or {})
        shown = ", ".join(repr(k) for k in self.keys)
        super().__init__(
            f"write precondition failed for {shown}: the stored ETag no longer matches "
            "(another writer committed first) or the document exists where create-only was asked"
        )


class MergeConflictError(ConflictError, StateError):
    """Both this turn and a concurrent writer changed a field whose merge policy is "raise"."""

    def __init__(self, key: str, paths: Iterable[str]) -> None:
        self.key = key
        self.paths = sorted(paths)
        shown = ", ".join(repr(p) for p in self.paths)
        super().__init__(
            f"concurrent change to {shown} in {key!r}: another turn changed the same field and its "
            "merge policy is 'raise'; nothing from this turn was committed for that document"
        )


class DuplicateActivityError(ConflictError):
    """A redelivered activity ran while another delivery completed it; this run's changes were dropped."""

    def __init__(self, activity_id: str, key: str) -> None:
        self.activity_id = activity_id
        self.key = key
        super().__init__(
            f"activity {activity_id!r} was already committed to {key!r} by another delivery; "
            "this delivery's state changes were dropped (exactly-once)"
        )


class CommitRetriesExhaustedError(ConflictError):
    """The commit kept losing the compare-and-set race after every retry.

    ``keys``: the keys whose last write conflicted. ``written``: documents this commit did write (on a
    storage without atomic batches); ``unwritten``: those it did not. A redelivery of the activity writes
    the unwritten ones and leaves the written ones as they are.
    """

    def __init__(
        self,
        keys: Iterable[str],
        attempts: int,
        *,
        written: Iterable[str] = (),
        unwritten: Iterable[str] = (),
    ) -> None:
        self.keys = sorted(keys)
        self.attempts = attempts
        self.written = sorted(written)
        self.unwritten = sorted(unwritten)
        shown = ", ".join(repr(k) for k in self.keys)
        outcome = (
            f"; written: {', '.join(repr(k) for k in self.written)}; not written: "
            f"{', '.join(repr(k) for k in self.unwritten) or 'none'}. A redelivery of the activity "
            "completes the unwritten ones"
            if self.written
            else "; nothing was written"
        )
        super().__init__(
            f"gave up committing {shown} after {attempts} attempts: other writers kept winning{outcome}. "
            "Raise max_commit_attempts or reduce contention on these documents."
        )


class ConcurrentDeliveryError(ConflictError):
    """Another delivery of the same activity checkpointed first while this one ran; this one stopped.

    Only one delivery carries an activity forward. What this delivery committed before it stopped stays;
    a later redelivery resumes from whatever the other one leaves.
    """

    def __init__(self, activity_id: str, key: str) -> None:
        self.activity_id = activity_id
        self.key = key
        super().__init__(
            f"activity {activity_id!r} is being handled by another delivery at the same time (it "
            f"checkpointed {key!r} first); this delivery stopped. Fail the request so the channel "
            "redelivers: the redelivery resumes from the checkpointed state"
        )


class SecretValueError(StateValueError):
    """set() was given something that looks like a credential; credentials do not belong in state."""

    def __init__(self, path: str, found: str) -> None:
        super().__init__(
            path,
            f"it looks like {found}. Store a reference instead (a Key Vault secret name, or use the "
            "token service), or allow this path explicitly if it really holds no credential",
        )
        self.found = found


class UnsupportedStorageError(StorageError, TypeError):
    """The storage does not declare a capability the requested operation needs."""

    def __init__(self, storage: str, capability: str, operation: str) -> None:
        self.storage = storage
        self.capability = capability
        super().__init__(
            f"{operation} needs a storage with the {capability!r} capability, and {storage} does not "
            "declare it; run it against a backend that does (for example Memory, File or Redis)"
        )


class EncryptionError(TurnStateError):
    """Field encryption failed, or its keys cannot be used."""


class KeyRingError(EncryptionError, ValueError):
    """A key ring is misconfigured: a key missing, of the wrong size, malformed, duplicated or unknown.

    Messages name the key id or the configuration entry, never the key bytes.
    """


class DecryptionError(EncryptionError):
    """An encrypted field cannot be decrypted: tampered with, moved from another key or field, written
    under a key id this ring does not hold, or not a well-formed envelope. The document is left untouched."""

    def __init__(self, key: str, path: str, reason: str) -> None:
        self.key = key
        self.path = path
        self.reason = reason
        super().__init__(f"cannot decrypt field {path!r} of {key!r}: {reason}")


class PlaintextFieldError(EncryptionError):
    """A field declared encrypted holds a plain value in storage.

    Raised unless the encryption was built with ``allow_plaintext=True`` (migration mode).
    """

    def __init__(self, key: str, path: str) -> None:
        self.key = key
        self.path = path
        super().__init__(
            f"field {path!r} of {key!r} is declared encrypted but is stored as plaintext. If this data "
            "predates encryption, enable allow_plaintext (migration mode) until the re-encrypt operation "
            "has run; otherwise treat the document as tampered with"
        )
