"""turnstate: per-turn state for async Python bots.

Scopes loaded in one read and committed in one write only when the turn succeeds, with ETag concurrency
and field-level merging, TTL, field encryption and redelivery detection, over pluggable storages.
"""

from turnstate.activity import Activity, ChannelAccount, ConversationAccount
from turnstate.codec import FieldCodec
from turnstate.errors import (
    CommitRetriesExhaustedError,
    ConcurrentDeliveryError,
    ConflictError,
    CorruptDocumentError,
    DecryptionError,
    DuplicateActivityError,
    EncryptionError,
    InvalidItemError,
    InvalidKeyError,
    KeyRingError,
    MergeConflictError,
    MissingIdError,
    PathError,
    PlaintextFieldError,
    PreconditionFailedError,
    SecretValueError,
    StateError,
    StateTypeError,
    StateValueError,
    StorageError,
    StorageUnavailableError,
    TurnClosedError,
    TurnStateError,
    UnknownScopeError,
    UnsupportedStorageError,
)
from turnstate.field_encryption import FieldEncryption
from turnstate.keyring import EnvKeys, KeyProvider, KeyRing
from turnstate.keys import KeyScheme, TurnIds
from turnstate.manager import StateManager
from turnstate.merge import ABSENT, MergePolicies
from turnstate.middleware import StateMiddleware
from turnstate.reencrypt import ReencryptReport, reencrypt
from turnstate.scopes import Scope
from turnstate.state import ScopeState, TurnState
from turnstate.storage.base import ANY_ETAG, Capabilities, Storage, StoredItem, WriteItem
from turnstate.storage.file import FileStorage
from turnstate.storage.memory import MemoryStorage
from turnstate.turn import Turn

__all__ = [
    "ABSENT",
    "ANY_ETAG",
    "Activity",
    "Capabilities",
    "ChannelAccount",
    "CommitRetriesExhaustedError",
    "ConcurrentDeliveryError",
    "ConflictError",
    "ConversationAccount",
    "CorruptDocumentError",
    "DecryptionError",
    "DuplicateActivityError",
    "EncryptionError",
    "EnvKeys",
    "FieldCodec",
    "FieldEncryption",
    "FileStorage",
    "InvalidItemError",
    "InvalidKeyError",
    "KeyProvider",
    "KeyRing",
    "KeyRingError",
    "KeyScheme",
    "MemoryStorage",
    "MergeConflictError",
    "MergePolicies",
    "MissingIdError",
    "PathError",
    "PlaintextFieldError",
    "PreconditionFailedError",
    "ReencryptReport",
    "Scope",
    "ScopeState",
    "SecretValueError",
    "StateError",
    "StateManager",
    "StateMiddleware",
    "StateTypeError",
    "StateValueError",
    "Storage",
    "StorageError",
    "StorageUnavailableError",
    "StoredItem",
    "Turn",
    "TurnClosedError",
    "TurnIds",
    "TurnState",
    "TurnStateError",
    "UnknownScopeError",
    "UnsupportedStorageError",
    "WriteItem",
    "reencrypt",
]
