"""BlobStorage when Azurite stops, comes back on the same port with its data, or stalls.

Each test runs its own Azurite (not the session one), keeping its data on disk (--location), so stopping
or pausing it affects no other test. The clients get no retries and a short timeout, so each failing call
fails in about a second at most.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import AzureError
from azurite_server import Azurite, started_azurite
from turnstate_blob import BlobStorage

from turnstate.errors import PreconditionFailedError, StorageUnavailableError
from turnstate.storage.base import WriteItem

TIMEOUT = 1  # seconds, for connecting and for each read of a response
FAST_FAILING = {"retry_total": 0, "connection_timeout": TIMEOUT, "read_timeout": TIMEOUT}
GUARD = 30.0  # a call that fails as configured ends long before this; it only stops a hang


def new_key(name: str) -> str:
    return f"faults/{uuid.uuid4().hex}/{name}"


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite for this test alone; the test may stop, restart or pause it."""
    azurite = started_azurite(Azurite(tmp_path / "azurite"))
    yield azurite
    if azurite.process is not None and azurite.process.poll() is None:
        os.kill(azurite.process.pid, signal.SIGCONT)  # a paused process would ignore SIGKILL until resumed
    azurite.stop()


@pytest.fixture
async def storage(own_azurite: Azurite) -> AsyncIterator[BlobStorage]:
    async with BlobStorage(
        "faults", connection_string=own_azurite.connection_string, create_container=True, **FAST_FAILING
    ) as storage:
        yield storage


def assert_unavailable(info: pytest.ExceptionInfo[StorageUnavailableError], action: str, key: str) -> None:
    assert f"failed to {action} {key!r}" in str(info.value)
    assert isinstance(info.value.__cause__, AzureError)


async def assert_read_and_write_unavailable(storage: BlobStorage, key: str, etag: str) -> None:
    with pytest.raises(StorageUnavailableError) as read_info:
        await asyncio.wait_for(storage.read([key]), GUARD)
    assert_unavailable(read_info, "read", key)
    with pytest.raises(StorageUnavailableError) as write_info:
        await asyncio.wait_for(storage.write({key: WriteItem(b'{"n":9}', if_match=etag)}), GUARD)
    assert_unavailable(write_info, "write", key)
    assert "re-read before writing again" in str(write_info.value)


async def test_killed_azurite_fails_calls_with_storage_unavailable(
    own_azurite: Azurite, storage: BlobStorage
) -> None:
    key = new_key("conversation")
    etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
    own_azurite.kill()
    await assert_read_and_write_unavailable(storage, key, etag)
    with pytest.raises(StorageUnavailableError):
        await asyncio.wait_for(storage.delete([key]), GUARD)
    with pytest.raises(StorageUnavailableError):
        await asyncio.wait_for(anext(storage.list_keys("faults/")), GUARD)


async def test_documents_committed_before_a_stop_read_back_after_the_restart(
    own_azurite: Azurite, storage: BlobStorage
) -> None:
    """Azurite stopped mid-run and started again on its data: everything acknowledged is still there,
    the same storage object reconnects by itself, and ETags read before the stop still work."""
    keys = [new_key(f"doc-{n}") for n in range(20)]
    etags = await storage.write({key: WriteItem(b'{"n":%d}' % n) for n, key in enumerate(keys)})
    hashed = new_key("é" * 600)
    etags |= await storage.write({hashed: WriteItem(b'{"long":1}', ttl=3600)})

    own_azurite.terminate()
    await assert_read_and_write_unavailable(storage, keys[0], etags[keys[0]])
    started_azurite(own_azurite)  # same port, same --location

    found = await storage.read([*keys, hashed])
    assert {k: (v.value, v.etag) for k, v in found.items()} == {
        **{key: (b'{"n":%d}' % n, etags[key]) for n, key in enumerate(keys)},
        hashed: (b'{"long":1}', etags[hashed]),
    }
    assert found[hashed].expires_at is not None
    etag = (await storage.write({keys[0]: WriteItem(b'{"n":100}', if_match=etags[keys[0]])}))[keys[0]]
    assert (await storage.read([keys[0]]))[keys[0]].etag == etag
    assert hashed in {k async for k in storage.list_keys("faults/")}


async def test_stalled_azurite_times_out_with_storage_unavailable_then_recovers(
    own_azurite: Azurite, storage: BlobStorage
) -> None:
    """A paused Azurite (SIGSTOP) accepts connections but never answers: calls end with a typed timeout."""
    key = new_key("conversation")
    etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
    assert own_azurite.process is not None
    pid = own_azurite.process.pid

    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(StorageUnavailableError) as info:
            await asyncio.wait_for(storage.read([key]), GUARD)
        assert_unavailable(info, "read", key)
        assert "timeout" in str(info.value).lower() or "timed out" in str(info.value).lower()
        with pytest.raises(StorageUnavailableError):
            await asyncio.wait_for(storage.write({key: WriteItem(b'{"n":2}', if_match=etag)}), GUARD)
    finally:
        os.kill(pid, signal.SIGCONT)

    # The timed-out write was applied completely or not at all: Azurite may still apply it after it
    # resumes, so a writer re-reads and writes under the ETag it read until it wins, as a turn does.
    for _ in range(10):
        found = (await storage.read([key]))[key]
        assert found.value in (b'{"n":1}', b'{"n":2}')
        try:
            etag = (await storage.write({key: WriteItem(b'{"n":3}', if_match=found.etag)}))[key]
        except PreconditionFailedError:
            continue
        break
    found = (await storage.read([key]))[key]
    assert (found.value, found.etag) == (b'{"n":3}', etag)
