"""Azure Blob Storage storage for turnstate.

::

    from turnstate_blob import BlobStorage

    storage = BlobStorage("bot-state", connection_string=..., create_container=True)
"""

from turnstate_blob._names import MAX_NAME_LENGTH
from turnstate_blob.legacy import LegacyDocument, read_legacy
from turnstate_blob.storage import BlobStorage

__all__ = ["MAX_NAME_LENGTH", "BlobStorage", "LegacyDocument", "read_legacy"]
