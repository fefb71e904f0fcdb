"""Storage protocol and the embedded backends.

Only the protocol is imported here; each backend module loads on its own import.
"""

from turnstate.storage.base import ANY_ETAG, Capabilities, Storage, StoredItem, WriteItem

__all__ = ["ANY_ETAG", "Capabilities", "Storage", "StoredItem", "WriteItem"]
