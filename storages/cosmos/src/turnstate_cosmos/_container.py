"""The container a CosmosStorage uses: how it is reached, and its set-up and check on first use.

It is given (``container_client=``), or named on a client that is given (``client=``) or built from an
endpoint and a credential; only a client built here is owned (closed) by the storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceExistsError

from turnstate.errors import StorageError
from turnstate_cosmos.settings import PARTITION_KEY_PATH, indexing_policy

_SETUP_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Target:
    """Where a storage's items live. ``where`` names them in messages (never with a credential);
    ``client`` is None when the container itself was given; ``owned``: the storage built the client."""

    database: str
    container: str
    where: str
    client: CosmosClient | None = None
    container_client: ContainerProxy | None = None
    owned: bool = False


def target(
    endpoint: str | None,
    credential: Any,
    database: str | None,
    container: str | None,
    *,
    client: CosmosClient | None,
    container_client: ContainerProxy | None,
    options: Mapping[str, Any],
) -> Target:
    """The target the constructor's arguments name; TypeError for a combination that names none."""
    if container_client is not None:
        return _given_container(container_client, endpoint, credential, database, container, client, options)
    if not isinstance(database, str) or not database or not isinstance(container, str) or not container:
        raise TypeError("CosmosStorage needs database and container names (non-empty str)")
    if client is not None:
        if endpoint is not None or credential is not None or options:
            raise TypeError("CosmosStorage(client=...) takes no endpoint, credential or client options")
        if not isinstance(client, CosmosClient):
            raise TypeError(
                "client must be an azure.cosmos.aio.CosmosClient (the synchronous one cannot be used), "
                f"got {type(client).__module__}.{type(client).__name__}"
            )
        return Target(database, container, f"database {database!r} container {container!r}", client)
    if not isinstance(endpoint, str) or not endpoint:
        raise TypeError(
            "CosmosStorage needs an endpoint such as 'https://myaccount.documents.azure.com:443/' "
            "and a credential, or client=... / container_client=..."
        )
    if credential is None:
        raise TypeError("CosmosStorage needs a credential: the account key or an async token credential")
    built = CosmosClient(endpoint, credential, **options)
    return Target(
        database, container, f"{endpoint} database {database!r} container {container!r}", built, owned=True
    )


def _given_container(
    container_client: ContainerProxy,
    endpoint: str | None,
    credential: Any,
    database: str | None,
    container: str | None,
    client: CosmosClient | None,
    options: Mapping[str, Any],
) -> Target:
    given = [
        name
        for name, value in (
            ("endpoint", endpoint is not None),
            ("credential", credential is not None),
            ("database", database is not None),
            ("container", container is not None),
            ("client", client is not None),
            *((option, True) for option in options),
        )
        if value
    ]
    if given:
        raise TypeError(f"CosmosStorage(container_client=...) takes no {', '.join(given)}")
    if not isinstance(container_client, ContainerProxy):
        raise TypeError(
            "container_client must be an azure.cosmos.aio.ContainerProxy, got "
            f"{type(container_client).__module__}.{type(container_client).__name__}"
        )
    name = container_client.id
    database_link: str = container_client.database_link
    database_name = database_link.rsplit("/", 1)[-1]
    return Target(database_name, name, f"container {name!r}", container_client=container_client)


async def open_container(target: Target, *, create_if_missing: bool, storage: str) -> ContainerProxy:
    """The target's container, created first if missing and allowed; checked to be partitioned by /id.

    ``storage`` names the storage in errors. SDK errors propagate unchanged.
    """
    container = target.container_client
    if container is None and target.client is not None:
        if create_if_missing:
            container = await _create(target.client, target.database, target.container)
        else:
            container = target.client.get_database_client(target.database).get_container_client(
                target.container
            )
    if container is None:
        raise StorageError(f"{storage} has neither a client nor a container")
    try:
        properties = await container.read()
    except CosmosHttpResponseError as exc:
        if exc.status_code == 404:
            raise StorageError(
                f"{storage} does not exist: create it with partition key {PARTITION_KEY_PATH!r}, "
                "or pass create_if_missing=True"
            ) from exc
        raise
    paths = (properties.get("partitionKey") or {}).get("paths")
    if paths != [PARTITION_KEY_PATH]:
        raise StorageError(
            f"{storage} is partitioned by {paths!r}; turnstate needs a container partitioned by "
            f"{PARTITION_KEY_PATH!r} (one item per key, so every point operation is single-partition)"
        )
    return container


async def _create(client: CosmosClient, database: str, container: str) -> ContainerProxy:
    attempt = 1
    while True:
        try:
            created = await client.create_database_if_not_exists(database)
            return await created.create_container_if_not_exists(
                container,
                partition_key=PartitionKey(PARTITION_KEY_PATH),
                default_ttl=-1,
                indexing_policy=indexing_policy(),
            )
        except CosmosResourceExistsError:
            # several instances starting at once race to create: one wins, the others see 409
            if attempt == _SETUP_ATTEMPTS:
                raise
            attempt += 1
