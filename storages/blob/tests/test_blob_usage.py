"""BlobStorage on Azurite (or a real account): blobs as stored, foreign blobs, expiry and purging,
construction, ownership of clients, the container, and errors."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient as SyncBlobServiceClient
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azurite_server import Account, MakeStorage
from turnstate_blob import BlobStorage
from turnstate_blob._names import blob_name

from turnstate import StateManager
from turnstate.errors import (
    CorruptDocumentError,
    InvalidItemError,
    PreconditionFailedError,
    StorageError,
)
from turnstate.storage.base import WriteItem
from turnstate.testing import ManualClock


def new_key(name: str = "k") -> str:
    return f"usage/{uuid.uuid4().hex}/{name}"


async def stored(container: ContainerClient, name: str) -> tuple[bytes, dict[str, str], str, str | None]:
    """Content, metadata, ETag and content type of a blob, as the SDK sees it."""
    downloaded = await container.download_blob(name)
    content = await downloaded.readall()
    properties = downloaded.properties
    return content, dict(properties.metadata), properties.etag, properties.content_settings.content_type


async def test_blob_layout(
    make_storage: MakeStorage, raw_container: ContainerClient, clock: ManualClock
) -> None:
    """A blob holds the value as it is, with the layout and the expiry in its metadata."""
    storage = make_storage(clock=clock)
    key = new_key("conversation/19:abc@thread.v2")
    value = b'{"greeting":"h\\u00e9llo","n":1}'
    etag = (await storage.write({key: WriteItem(value, ttl=2.5)}))[key]

    assert blob_name(key) == key  # readable keys keep their name, '/' segments included
    content, metadata, blob_etag, content_type = await stored(raw_container, key)
    assert (content, content_type) == (value, "application/json")
    assert metadata == {"turnstate": "1", "turnstate_expires_at": repr(clock.now + 2.5)}
    assert etag.startswith(blob_etag)

    etag = (await storage.write({key: WriteItem(value)}))[key]
    content, metadata, blob_etag, _ = await stored(raw_container, key)
    assert (metadata, etag) == ({"turnstate": "1"}, blob_etag)


async def test_long_key_is_stored_under_its_hash_and_checked_on_read(
    make_storage: MakeStorage, raw_container: ContainerClient
) -> None:
    storage = make_storage()
    prefix = new_key("")
    key, other = prefix + "é" * 700, prefix + "🙂" * 400
    await storage.write({key: WriteItem(b'{"n":1}'), other: WriteItem(b'{"n":2}')})

    name = blob_name(key)
    assert name.startswith("%h") and len(name) == 66
    content, metadata, _, _ = await stored(raw_container, name)
    raw_key = key.encode()
    assert content == raw_key + b'{"n":1}'
    assert metadata["turnstate_key_bytes"] == str(len(raw_key))
    assert {k async for k in storage.list_keys(prefix)} == {key, other}

    # Another key's blob copied under this key's hashed name is refused, never returned as data.
    other_content, other_metadata, _, _ = await stored(raw_container, blob_name(other))
    await raw_container.upload_blob(name, other_content, metadata=other_metadata, overwrite=True)
    with pytest.raises(CorruptDocumentError, match="belongs to another key") as info:
        await storage.read([key])
    assert info.value.key == key


@pytest.mark.parametrize(
    "content, metadata",
    [
        (b'{"n":1}', {}),
        (b'{"n":1}', {"turnstate": "9"}),
        (b'{"n":1}', {"turnstate": "1", "turnstate_expires_at": "x"}),
    ],
    ids=["no-metadata", "other-layout", "bad-expiry"],
)
async def test_blob_turnstate_did_not_write_is_reported_not_returned(
    make_storage: MakeStorage, raw_container: ContainerClient, content: bytes, metadata: dict[str, str]
) -> None:
    """Read and create-only raise CorruptDocumentError naming the key; other keys work; '*' replaces it."""
    storage = make_storage()
    key, good = new_key("foreign"), new_key("good")
    await storage.write({good: WriteItem(b'{"good":1}')})
    await raw_container.upload_blob(blob_name(key), content, metadata=metadata)

    with pytest.raises(CorruptDocumentError) as info:
        await storage.read([good, key])
    assert info.value.key == key and '{"n"' not in str(info.value)
    with pytest.raises(CorruptDocumentError):
        await storage.write({key: WriteItem(b'{"n":2}', if_match=None)})
    assert (await storage.read([good]))[good].value == b'{"good":1}'
    await storage.write({key: WriteItem(b'{"n":3}')})
    assert (await storage.read([key]))[key].value == b'{"n":3}'


async def test_list_keys_skips_blobs_turnstate_did_not_write(
    make_storage: MakeStorage, raw_container: ContainerClient
) -> None:
    storage = make_storage()
    prefix = new_key("")
    await storage.write({prefix + "ours": WriteItem(b"{}")})
    await raw_container.upload_blob(prefix + "legacy", b"{}")
    assert [k async for k in storage.list_keys(prefix)] == [prefix + "ours"]


async def test_expired_blob_reads_absent_is_replaced_by_create_only_and_purged(
    make_storage: MakeStorage, raw_container: ContainerClient, clock: ManualClock
) -> None:
    storage = make_storage(clock=clock)
    prefix = new_key("")
    gone, rewritten, live, forever = (prefix + name for name in ("gone", "rewritten", "live", "forever"))
    etags = await storage.write(
        {
            gone: WriteItem(b'{"n":1}', ttl=10),
            rewritten: WriteItem(b'{"n":2}', ttl=10),
            live: WriteItem(b'{"n":3}', ttl=1000),
            forever: WriteItem(b'{"n":4}'),
        }
    )
    await raw_container.upload_blob(prefix + "foreign", b"{}")
    clock.advance(11)

    assert list(await storage.read([gone, rewritten, live, forever])) == [live, forever]
    with pytest.raises(PreconditionFailedError):  # the ETag of an expired version never matches
        await storage.write({gone: WriteItem(b'{"n":5}', if_match=etags[gone])})
    await storage.write({rewritten: WriteItem(b'{"n":6}', if_match=None)})  # over the stored, expired blob
    assert (await storage.read([rewritten]))[rewritten].value == b'{"n":6}'

    assert await storage.purge_expired() == 1
    names = {blob.name async for blob in raw_container.list_blobs(name_starts_with=prefix)}
    assert names == {rewritten, live, forever, prefix + "foreign"}
    assert await storage.purge_expired() == 0


async def test_storage_given_a_client_never_closes_it(blob_account: Account, container_name: str) -> None:
    async with BlobServiceClient.from_connection_string(blob_account.connection_string) as service:
        key = new_key()
        async with BlobStorage(container_name, service_client=service, create_container=True) as storage:
            await storage.write({key: WriteItem(b"{}")})
        async with BlobStorage(container_client=service.get_container_client(container_name)) as storage:
            assert key in await storage.read([key])
        assert await service.get_container_client(container_name).exists()  # still open
        with pytest.raises(StorageError, match="closed"):
            await storage.read([key])


async def test_account_url_with_a_key_credential_or_a_sas_token(
    blob_account: Account, container_name: str
) -> None:
    sync = SyncBlobServiceClient.from_connection_string(blob_account.connection_string)
    account_url, name, account_key = sync.url, sync.account_name, sync.credential.account_key
    sync.close()
    assert name is not None
    key = new_key()
    async with BlobStorage(
        container_name, account_url=account_url, credential=AzureNamedKeyCredential(name, account_key)
    ) as storage:
        await storage.create_container()
        await storage.write({key: WriteItem(b'{"n":1}')})
    async with BlobStorage(container_name, account_url=account_url, credential=account_key) as storage:
        assert (await storage.read([key]))[key].value == b'{"n":1}'
    sas = generate_container_sas(
        name,
        container_name,
        account_key=account_key,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
    )
    async with BlobStorage(container_name, account_url=account_url, sas_token=sas) as storage:
        await storage.write({key: WriteItem(b'{"n":2}', if_match=(await storage.read([key]))[key].etag)})
        assert [k async for k in storage.list_keys(key)] == [key]
        assert sas not in repr(storage)


async def test_wrong_account_key_is_a_storage_error_naming_the_fix(
    blob_account: Account, container_name: str
) -> None:
    sync = SyncBlobServiceClient.from_connection_string(blob_account.connection_string)
    account_url, name = sync.url, sync.account_name
    sync.close()
    wrong = AzureNamedKeyCredential(str(name), "d3Jvbmcga2V5IGZvciB0aGUgdGVzdA==")
    async with BlobStorage(container_name, account_url=account_url, credential=wrong) as storage:
        with pytest.raises(StorageError, match="Check the credential") as info:
            await storage.read(["k"])
    assert isinstance(info.value.__cause__, HttpResponseError)


async def test_missing_container_is_reported_and_can_be_created(make_storage: MakeStorage) -> None:
    storage = make_storage(create_container=False)
    with pytest.raises(StorageError, match="container does not exist") as info:
        await storage.read(["k"])
    assert "create_container" in str(info.value)
    assert await storage.create_container() is True
    assert await storage.create_container() is False
    await storage.write({"k": WriteItem(b"{}")})
    assert "k" in await storage.read(["k"])


def test_construction_is_checked(blob_account: Account) -> None:
    connection_string = blob_account.connection_string
    with pytest.raises(TypeError, match="exactly one of"):
        BlobStorage("c")
    with pytest.raises(TypeError, match="exactly one of"):
        BlobStorage("c", connection_string=connection_string, account_url="https://a.blob.core.windows.net")
    with pytest.raises(TypeError, match="container name"):
        BlobStorage("", connection_string=connection_string)
    with pytest.raises(TypeError, match="synchronous"):
        BlobStorage("c", service_client=SyncBlobServiceClient.from_connection_string(connection_string))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="credential= or sas_token="):
        BlobStorage("c", account_url="https://a.blob.core.windows.net", credential="k", sas_token="sv=1")


async def test_a_value_that_is_not_bytes_is_refused_before_anything_is_written(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage()
    good, bad = new_key("good"), new_key("bad")
    with pytest.raises(InvalidItemError) as info:
        await storage.write({good: WriteItem(b"{}"), bad: WriteItem("text")})  # type: ignore[arg-type]
    assert info.value.key == bad
    assert await storage.read([good, bad]) == {}


async def test_turns_of_a_state_manager_on_blob_storage(make_storage: MakeStorage) -> None:
    manager = StateManager(make_storage(), ttl={"conversation": 3600})
    activity = {
        "type": "message",
        "id": "a1",
        "channelId": "msteams",
        "conversation": {"id": "19:abc@thread.v2"},
        "from": {"id": "29:user"},
        "recipient": {"id": "28:bot"},
    }
    for n in range(1, 4):
        async with manager.turn(dict(activity, id=f"a{n}")) as state:
            assert state.conversation.incr("count") == n
    keys = [k async for k in manager.storage.list_keys("conversation/")]
    assert len(keys) == 1
    found = (await manager.storage.read(keys))[keys[0]]
    assert found.expires_at is not None and json.loads(found.value)["data"]["count"] == 3


async def test_account_url_alone_signs_in_with_azure_identity_and_closes_that_credential() -> None:
    """azure-identity is imported only for this; the credential the storage made is its to close."""
    from azure.identity.aio import DefaultAzureCredential

    storage = BlobStorage("bot-state", account_url="https://example.blob.core.windows.net")
    credential = storage.container_client.credential
    assert isinstance(credential, DefaultAzureCredential)
    await storage.aclose()
    await storage.aclose()


async def test_a_leased_blob_is_a_storage_error_not_a_conflict(
    make_storage: MakeStorage, raw_container: ContainerClient
) -> None:
    """Azure refuses writes to a blob leased by someone else (412 LeaseIdMissing): that is no ETag conflict,
    so a turn must not re-read and retry it forever."""
    storage = make_storage()
    key = new_key("leased")
    etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
    lease = await raw_container.get_blob_client(blob_name(key)).acquire_lease(lease_duration=-1)
    try:
        for if_match in ("*", etag):
            with pytest.raises(StorageError, match="LeaseIdMissing") as info:
                await storage.write({key: WriteItem(b'{"n":2}', if_match=if_match)})
            assert not isinstance(info.value, PreconditionFailedError)
            assert key in str(info.value)
    finally:
        await lease.release()
    assert (await storage.read([key]))[key].value == b'{"n":1}'
