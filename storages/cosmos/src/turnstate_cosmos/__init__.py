"""Azure Cosmos DB storage for turnstate.

::

    from turnstate_cosmos import CosmosStorage

    storage = CosmosStorage(endpoint, credential, database="bot", container="state")
"""

from turnstate_cosmos._keys import MAX_ID_LENGTH
from turnstate_cosmos.storage import PARTITION_KEY_PATH, CosmosStorage

__all__ = ["MAX_ID_LENGTH", "PARTITION_KEY_PATH", "CosmosStorage"]
