"""Round trips per call, counted twice: sends on the client's connections and commands the server ran.

A "send" is one packed write on one connection followed by reading its replies: one round trip. On a
cluster the commands for different masters go out in parallel, one send per master.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis_test_servers import RedisClusterNodes, RedisServer, calls_delta, command_calls
from turnstate_redis import RedisStorage

from turnstate import Scope, StateManager
from turnstate.storage.base import WriteItem


class SendCounter(Counter[int]):
    """Packed writes per server port, counted on every asyncio redis-py connection while installed."""

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        counter = self
        send = Connection.send_packed_command

        async def counting_send(conn: Connection, command: Any, check_health: bool = True) -> None:
            counter[conn.port] += 1
            await send(conn, command, check_health)

        monkeypatch.setattr(Connection, "send_packed_command", counting_send)


def cas_calls(*, created: int = 0, replaced: int = 0, noscript: int = 0, loads: int = 0) -> dict[str, int]:
    """The commandstats delta of EVALSHA writes: the script's own commands count as calls too.

    ``loads``: sends that loaded the scripts after NOSCRIPT (each loads the read and the write script).
    """
    calls = {
        "evalsha": created + replaced + noscript,
        "getrange": created + replaced,
        "exists": created,
        "set": created + replaced,
        "script|load": 2 * loads,
    }
    return {name: n for name, n in calls.items() if n}


def read_calls(*, found: int = 0, absent: int = 0, scripts: int = 1) -> dict[str, int]:
    """The commandstats delta of an EVALSHA read: GET of every key, PTTL of those found, and ``scripts``
    EVALSHAs (one on a single server, one per key on a cluster)."""
    calls = {"evalsha": scripts, "get": found + absent, "pttl": found}
    return {name: n for name, n in calls.items() if n}


def merged(*deltas: dict[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for delta in deltas:
        total.update(delta)
    return dict(total)


def _keys(n: int) -> list[str]:
    run = uuid.uuid4().hex
    return [f"round-trips/{run}/{i}" for i in range(n)]


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> SendCounter:
    counter = SendCounter()
    counter.install(monkeypatch)
    return counter


@pytest.fixture
async def standalone(redis_server: RedisServer, sends: SendCounter) -> AsyncIterator[RedisStorage]:
    storage = RedisStorage(redis_server.url)
    # Open the connection (its handshake is a round trip of its own, once per connection) and make
    # sure the server has the script (a server that never saw it answers NOSCRIPT once).
    await storage.write({"warm-up": WriteItem(b"{}")})
    sends.clear()
    yield storage
    await storage.aclose()


@pytest.fixture
async def clustered(redis_cluster: RedisClusterNodes, sends: SendCounter) -> AsyncIterator[RedisStorage]:
    storage = RedisStorage(redis_cluster.url, cluster=True)
    # Load the slot map, open one connection to each master and make sure each has the script.
    await storage.write({f"warm-up/{i}": WriteItem(b"{}") for i in range(64)})
    sends.clear()
    yield storage
    await storage.aclose()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
async def test_standalone_read_write_delete_cost_one_round_trip_each(
    standalone: RedisStorage, redis_server: RedisServer, sends: SendCounter, n: int
) -> None:
    keys = _keys(n)
    before = command_calls(redis_server.port)
    etags = await standalone.write({k: WriteItem(b'{"n":1}') for k in keys})
    assert sends.total() == 1
    assert calls_delta(before, command_calls(redis_server.port)) == cas_calls(created=n)

    sends.clear()
    before = command_calls(redis_server.port)
    etags = await standalone.write({k: WriteItem(b'{"n":2}', if_match=etags[k]) for k in keys})
    assert sends.total() == 1
    assert calls_delta(before, command_calls(redis_server.port)) == cas_calls(replaced=n)

    sends.clear()
    before = command_calls(redis_server.port)
    found = await standalone.read(keys)
    assert sorted(found) == sorted(keys)
    assert sends.total() == 1
    assert calls_delta(before, command_calls(redis_server.port)) == read_calls(found=n)

    sends.clear()
    before = command_calls(redis_server.port)
    await standalone.delete(keys)
    assert sends.total() == 1
    assert calls_delta(before, command_calls(redis_server.port)) == {"del": n}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
async def test_standalone_write_after_script_flush_loads_the_script_once(
    standalone: RedisStorage, redis_server: RedisServer, sends: SendCounter, n: int
) -> None:
    keys = _keys(n)
    with redis_server.admin() as admin:
        admin.script_flush()
    before = command_calls(redis_server.port)
    etags = await standalone.write({k: WriteItem(b'{"n":1}') for k in keys})
    # The first send came back NOSCRIPT (nothing ran); the second loads the script and re-sends.
    assert sends.total() == 2
    assert calls_delta(before, command_calls(redis_server.port)) == cas_calls(created=n, noscript=n, loads=1)
    assert {k: v.etag for k, v in (await standalone.read(keys)).items()} == etags

    sends.clear()
    before = command_calls(redis_server.port)
    await standalone.write({k: WriteItem(b'{"n":2}', if_match=etags[k]) for k in keys})
    assert sends.total() == 1
    assert calls_delta(before, command_calls(redis_server.port)) == cas_calls(replaced=n)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
async def test_cluster_read_and_write_cost_one_round_trip_per_master(
    clustered: RedisStorage, redis_cluster: RedisClusterNodes, sends: SendCounter, n: int
) -> None:
    keys = _keys(n)
    masters = Counter(redis_cluster.node_for(f"turnstate:{k}".encode()).port for k in keys)
    before = redis_cluster.command_calls()
    etags = await clustered.write({k: WriteItem(b'{"n":1}') for k in keys})
    assert sends == Counter(dict.fromkeys(masters, 1))
    assert calls_delta(before, redis_cluster.command_calls()) == cas_calls(created=n)

    sends.clear()
    before = redis_cluster.command_calls()
    found = await clustered.read(keys)
    assert {k: v.etag for k, v in found.items()} == etags
    assert sends == Counter(dict.fromkeys(masters, 1))
    assert calls_delta(before, redis_cluster.command_calls()) == read_calls(found=n, scripts=n)


async def test_cluster_write_after_script_flush_loads_the_script_once_per_master(
    clustered: RedisStorage, redis_cluster: RedisClusterNodes, sends: SendCounter
) -> None:
    # Enough keys that every master holds some.
    keys = _keys(24)
    masters = {redis_cluster.node_for(f"turnstate:{k}".encode()).port for k in keys}
    assert len(masters) == 3
    for node in redis_cluster.nodes:
        with node.admin() as admin:
            admin.script_flush()
    before = redis_cluster.command_calls()
    await clustered.write({k: WriteItem(b"{}") for k in keys})
    assert sends == Counter(dict.fromkeys(masters, 2))
    expected = cas_calls(created=len(keys), noscript=len(keys), loads=3)
    assert calls_delta(before, redis_cluster.command_calls()) == expected

    sends.clear()
    await clustered.write({k: WriteItem(b"{}") for k in keys})
    assert sends == Counter(dict.fromkeys(masters, 1))


def _activity(conversation: str, turn_no: int) -> dict[str, Any]:
    """A Teams message in ``conversation`` from a user of that conversation alone (fresh documents)."""
    return {
        "type": "message",
        "id": f"{conversation}-activity-{turn_no}",
        "channelId": "msteams",
        "conversation": {"id": conversation, "tenantId": "tenant-1"},
        "from": {"id": f"29:user-of-{conversation}"},
        "recipient": {"id": "28:bot-1"},
    }


def _manager(storage: RedisStorage, n: int) -> tuple[StateManager, list[str]]:
    """A manager with ``n`` persisted scopes: the built-in ones first, then a custom one."""
    builtin = ["conversation", "user", "private"][: min(n, 3)]
    custom = [Scope("incident", key=lambda activity: activity.conversation.id)] if n == 4 else []
    return StateManager(storage, builtin_scopes=builtin, scopes=custom), builtin + [s.name for s in custom]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
async def test_standalone_turn_costs_one_read_and_one_write_round_trip(
    standalone: RedisStorage, redis_server: RedisServer, sends: SendCounter, n: int
) -> None:
    manager, scopes = _manager(standalone, n)
    conversation = f"19:{uuid.uuid4().hex}@thread.v2"
    for turn_no in range(3):
        sends.clear()
        before = command_calls(redis_server.port)
        async with manager.turn(_activity(conversation, turn_no)) as state:
            for name in scopes:
                getattr(state, name).incr("turns")
        assert sends.total() == 2, f"turn {turn_no}"
        expected = cas_calls(created=n) if turn_no == 0 else cas_calls(replaced=n)
        read = read_calls(absent=n) if turn_no == 0 else read_calls(found=n)
        assert calls_delta(before, command_calls(redis_server.port)) == merged(read, expected)
    async with manager.turn(_activity(conversation, 99)) as state:
        assert [getattr(state, name).get("turns") for name in scopes] == [3] * n


@pytest.mark.parametrize("n", [1, 2, 3, 4])
async def test_cluster_turn_costs_one_read_and_one_write_round_trip_per_master(
    clustered: RedisStorage, redis_cluster: RedisClusterNodes, sends: SendCounter, n: int
) -> None:
    manager, scopes = _manager(clustered, n)
    conversation = f"19:{uuid.uuid4().hex}@thread.v2"
    for turn_no in range(3):
        sends.clear()
        async with manager.turn(_activity(conversation, turn_no)) as state:
            for name in scopes:
                getattr(state, name).incr("turns")
        # Each master holding one of the turn's documents got one send for the read, one for the write.
        assert set(sends.values()) == {2}, f"turn {turn_no}: {sends}"
        assert 1 <= len(sends) <= n
