"""turnstate: per-turn state for async Python bots.

Scopes loaded in one read and committed in one write only when the turn succeeds, with ETag concurrency
and field-level merging, TTL, field encryption and redelivery detection, over pluggable storages.
"""

from turnstate.activity import Activity, ChannelAccount, ConversationAccount
from turnstate.errors import (
    CommitRetriesExhaustedError,
    ConflictError,
    CorruptDocumentError,
    DuplicateActivityError,
    InvalidItemError,
    InvalidKeyError,
    MergeConflictError,
    MissingIdError,
    PathError,
    PreconditionFailedError,
    StateError,
    StateTypeError,
    StateValueError,
    StorageError,
    StorageUnavailableError,
    TurnClosedError,
    TurnStateError,
    UnknownScopeError,
)
from turnstate.keys import KeyScheme, TurnIds
from turnstate.merge import ABSENT, MergePolicies
from turnstate.middleware import StateMiddleware
from turnstate.scopes import Scope
from turnstate.state import ScopeState, TurnState
from turnstate.storage.base import ANY_ETAG, Capabilities, Storage, StoredItem, WriteItem
from turnstate.storage.memory import MemoryStorage
from turnstate.turn import StateManager, Turn

__all__ = [
    "ABSENT",
    "ANY_ETAG",
    "Activity",
    "Capabilities",
    "ChannelAccount",
    "CommitRetriesExhaustedError",
    "ConflictError",
    "ConversationAccount",
    "CorruptDocumentError",
    "DuplicateActivityError",
    "InvalidItemError",
    "InvalidKeyError",
    "KeyScheme",
    "MemoryStorage",
    "MergeConflictError",
    "MergePolicies",
    "MissingIdError",
    "PathError",
    "PreconditionFailedError",
    "Scope",
    "ScopeState",
    "StateError",
    "StateManager",
    "StateMiddleware",
    "StateTypeError",
    "StateValueError",
    "StorageError",
    "StorageUnavailableError",
    "StoredItem",
    "Storage",
    "Turn",
    "TurnClosedError",
    "TurnIds",
    "TurnState",
    "TurnStateError",
    "UnknownScopeError",
    "WriteItem",
]
