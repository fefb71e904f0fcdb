"""CosmosStorage when its server dies, comes back on the same port, or stalls: typed errors, then recovery.

Each test runs its own test server (not the session one), so killing or pausing it affects no other test.
The clients get no retries and a short timeout, so each failing call fails in about a second at most.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import AzureError
from cosmos_test_server import EMULATOR_KEY, CosmosTestServer, ServerError, client_options
from turnstate_cosmos import CosmosStorage

from turnstate.errors import StorageError, StorageUnavailableError
from turnstate.storage.base import WriteItem

TIMEOUT = 1.0  # seconds, for connecting and for each read of a response
FAST_FAILING = {"retry_total": 0, "connection_timeout": TIMEOUT, "read_timeout": TIMEOUT}

# server.js listens on port 0; this preload makes that port the one in TURNSTATE_COSMOS_PORT, so a
# restarted server comes back where the storage's client expects it.
SAME_PORT_PRELOAD = """\
"use strict";
const net = require("net");
const port = Number(process.env.TURNSTATE_COSMOS_PORT);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (requested, ...rest) {
  return listen.call(this, requested === 0 ? port : requested, ...rest);
};
"""


def new_key(name: str) -> str:
    return f"faults/{uuid.uuid4().hex}/{name}"


def start_or_fail(server: CosmosTestServer) -> None:
    try:
        server.start()
    except ServerError as exc:
        server.stop()
        pytest.fail(f"could not start the Cosmos test server these tests need: {exc}", pytrace=False)


def kill(server: CosmosTestServer) -> None:
    """SIGKILL the node process: no shutdown, its sockets are closed by the kernel."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=10)
    server.stop()


def restart_on_same_port(server: CosmosTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start a new server process (empty: the test server keeps data in memory) on the old port."""
    port = server.port
    preload = server.workdir / "same-port.js"
    preload.write_text(SAME_PORT_PRELOAD)
    with monkeypatch.context() as env:
        env.setenv("NODE_OPTIONS", f"--require {preload}")
        env.setenv("TURNSTATE_COSMOS_PORT", str(port))
        start_or_fail(server)
    assert server.port == port, f"the server came back on port {server.port}, not {port}"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[CosmosTestServer]:
    """A test server for this test alone; the test may kill, restart or pause it."""
    server = CosmosTestServer(tmp_path / "cosmos")
    start_or_fail(server)
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)  # a paused process would ignore SIGTERM
    server.stop()


@pytest.fixture
async def storage(own_server: CosmosTestServer) -> AsyncIterator[CosmosStorage]:
    async with CosmosStorage(
        own_server.endpoint,
        EMULATOR_KEY,
        "faults",
        "state",
        **client_options(own_server),
        **FAST_FAILING,
    ) as storage:
        yield storage


def assert_unavailable(info: pytest.ExceptionInfo[StorageUnavailableError], action: str, key: str) -> None:
    assert f"failed to {action} {key!r}" in str(info.value)
    assert isinstance(info.value.__cause__, AzureError)


async def assert_read_and_write_unavailable(
    storage: CosmosStorage, key: str, etag: str
) -> pytest.ExceptionInfo[StorageUnavailableError]:
    """A read of ``key`` and a write over ``etag`` both raise StorageUnavailableError; the write's info."""
    with pytest.raises(StorageUnavailableError) as read_info:
        await storage.read([key])
    assert_unavailable(read_info, "read", key)
    with pytest.raises(StorageUnavailableError) as write_info:
        await storage.write({key: WriteItem(b'{"n":2}', if_match=etag)})
    assert_unavailable(write_info, "write", key)
    return write_info


async def test_killed_server_fails_reads_and_writes_with_storage_unavailable(
    own_server: CosmosTestServer, storage: CosmosStorage
) -> None:
    """Once the server is gone, a read and a write raise StorageUnavailableError chained from the SDK."""
    key = new_key("conversation")
    etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
    kill(own_server)

    write_info = await assert_read_and_write_unavailable(storage, key, etag)
    assert "re-read before writing again" in str(write_info.value)


async def test_same_storage_recovers_on_a_restarted_server_and_recreates_its_container(
    own_server: CosmosTestServer, storage: CosmosStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage reconnects by itself; a container lost with the server is created again by it."""
    key = new_key("conversation")
    await storage.write({key: WriteItem(b'{"n":1}')})
    kill(own_server)
    with pytest.raises(StorageUnavailableError):
        await storage.read([key])

    restart_on_same_port(own_server, monkeypatch)
    # The new server is reachable but empty: the first call finds the container gone (404) and says so
    # as a plain StorageError; the storage then sets the container up again on its next call.
    with pytest.raises(StorageError, match="gone") as info:
        await storage.read([key])
    assert not isinstance(info.value, StorageUnavailableError)
    assert "404" in str(info.value)

    # The original storage object works again, with no new client.
    assert await storage.read([key]) == {}
    etag = (await storage.write({key: WriteItem(b'{"n":2}')}))[key]
    found = await storage.read([key])
    assert (found[key].value, found[key].etag) == (b'{"n":2}', etag)
    etag = (await storage.write({key: WriteItem(b'{"n":3}', if_match=etag)}))[key]
    assert (await storage.read([key]))[key].value == b'{"n":3}'


async def test_stalled_server_times_out_with_storage_unavailable_then_recovers(
    own_server: CosmosTestServer, storage: CosmosStorage
) -> None:
    """A paused server makes calls time out as StorageUnavailableError; once resumed, calls work."""
    key = new_key("conversation")
    etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
    assert own_server.process is not None
    pid = own_server.process.pid

    os.kill(pid, signal.SIGSTOP)
    try:
        await assert_read_and_write_unavailable(storage, key, etag)
    finally:
        os.kill(pid, signal.SIGCONT)

    # The timed-out write was applied completely or not at all; the stored data survived the pause.
    found = (await storage.read([key]))[key]
    assert found.value in (b'{"n":1}', b'{"n":2}')
    etag = (await storage.write({key: WriteItem(b'{"n":3}', if_match=found.etag)}))[key]
    found = (await storage.read([key]))[key]
    assert (found.value, found.etag) == (b'{"n":3}', etag)
