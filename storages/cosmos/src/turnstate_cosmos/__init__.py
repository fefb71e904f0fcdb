"""Azure Cosmos DB storage for turnstate.

::

    from turnstate_cosmos import CosmosStorage

    storage = CosmosStorage(endpoint, credential, database="bot", container="state")
"""

from turnstate_cosmos._keys import MAX_ID_LENGTH
from turnstate_cosmos.charges import RequestCharges
from turnstate_cosmos.settings import PARTITION_KEY_PATH, ContainerSettings
from turnstate_cosmos.storage import CosmosStorage

__all__ = ["MAX_ID_LENGTH", "PARTITION_KEY_PATH", "ContainerSettings", "CosmosStorage", "RequestCharges"]
