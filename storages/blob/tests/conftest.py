"""Fixtures for the Blob storage tests: one Azurite per session on a free port, or a real account.

With TURNSTATE_BLOB_CONNECTION_STRING set, the same tests run against that account instead; every test
works in containers of its own, which are deleted afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azurite_server import Account, Azurite, MakeStorage, real_account, started_azurite
from turnstate_blob import BlobStorage

from turnstate.testing import ManualClock


@pytest.fixture(scope="session")
def blob_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    """The account the session's tests use; Azurite fails the tests (never skips) if it cannot start."""
    real = real_account()
    if real is not None:
        yield real
        return
    azurite = started_azurite(Azurite(tmp_path_factory.mktemp("azurite")))
    yield Account(azurite.connection_string, real=False)
    azurite.stop()


@pytest.fixture
async def service(blob_account: Account) -> AsyncIterator[BlobServiceClient]:
    """The raw SDK on the account, for writing and inspecting blobs as they are stored."""
    async with BlobServiceClient.from_connection_string(blob_account.connection_string) as client:
        yield client


@pytest.fixture
async def container_name(blob_account: Account, service: BlobServiceClient) -> AsyncIterator[str]:
    """A container name of this test's own; the container (if made) is deleted afterwards."""
    name = blob_account.new_container()
    yield name
    container = service.get_container_client(name)
    if await container.exists():
        await container.delete_container()


@pytest.fixture
async def raw_container(service: BlobServiceClient, container_name: str) -> ContainerClient:
    return service.get_container_client(container_name)


@pytest.fixture
async def make_storage(blob_account: Account, container_name: str) -> AsyncIterator[MakeStorage]:
    """Build BlobStorage instances on the test's container (created on first use unless told otherwise)."""
    made: list[BlobStorage] = []

    def make(**options: Any) -> BlobStorage:
        options.setdefault("create_container", True)
        storage = BlobStorage(container_name, connection_string=blob_account.connection_string, **options)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        await storage.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
