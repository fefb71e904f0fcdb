"""CosmosStorage turns per second, requests and RU per turn, against the raw azure-cosmos async SDK doing the
same point operations, same run.

Run: .venv/bin/python benchmarks/bench_cosmos.py [--quick] [--verified-tls]

Starts the Cosmos-compatible test server the Cosmos storage tests use (node, @vercel/cosmosdb-server under
storages/cosmos/testserver/server.js) on a free loopback port and stops it at the end. That server is local
and keeps items in memory, so the figures show the client side (SDK plus storage) and the test server, not
Cosmos DB latency: on a real account every round trip adds milliseconds and the ratio moves towards 1.

One turn = point-read a conversation and a user item (both reads at once), then replace both with an
If-Match precondition on the ETags just read (both replaces at once). CosmosStorage does it with ``read``
and ``write``. The peer is the SDK used by hand: two ``read_item`` calls gathered, then two
``replace_item`` calls with ``MatchConditions.IfNotModified`` gathered, on a client with the same options.
N conversations run concurrently (N = 1, 8, 64), each with its own items, so no turn conflicts.

Requests and RU per turn come from the charges each side recorded: CosmosStorage's ``charges``, and a
``response_hook`` on every raw SDK call. RU are the test server's modelled ``x-ms-request-charge`` (point
read: 1 RU per started KB; write: 5.7 RU per started KB; see server.js), not a real account's bill.

By default the clients connect without checking the test certificate (the SDK's default for 127.0.0.1)
and reuse connections. With --verified-tls they check it through ``ssl_config``, as the tests do; the SDK
then builds a new TLS context for every request, so each request opens a new connection.

Figures are the best of several alternating rounds; compare the ratio within one run, not absolute
figures across runs. The client CPU per turn (this process's CPU time over all rounds, divided by the
turns) is steadier than turns/s on a busy machine, where the test server competes for the same cores.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.aio import ContainerProxy, CosmosClient
from throughput import Turn, turns_per_second  # benchmarks/throughput.py, beside this script
from turnstate_cosmos import CosmosStorage
from turnstate_cosmos._keys import item_id

from turnstate.storage.base import WriteItem

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "storages" / "cosmos" / "tests"))
# the tests' server helper, found through the sys.path entry above
from cosmos_test_server import (
    EMULATOR_KEY,
    CosmosTestServer,
    ServerError,
    client_options,
)

DATABASE, CONTAINER = "bench", "state"
TIMEOUT = 10.0
CHARGE_HEADER = "x-ms-request-charge"
DOCUMENT = (
    b'{"v":1,"data":{'
    + b",".join(b'"field%d":"value-%d-abcdefghijklmnop"' % (i, i) for i in range(8))
    + b"}}"
)
LEVELS = (1, 8, 64)


class Tally:
    """Turns run, and requests and RU recorded, by one side."""

    def __init__(self) -> None:
        self.turns = self.requests = 0
        self.request_units = self.cpu_seconds = 0.0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def hook(self, headers: Mapping[str, Any], _body: Any) -> None:
        self.requests += 1
        self.request_units += float(headers.get(CHARGE_HEADER, 0))


async def timed(tally: Tally, turn: Turn, conversations: int, seconds: float) -> float:
    """turns_per_second, adding this process's CPU time to the tally."""
    started = time.process_time()
    rate = await turns_per_second(turn, conversations, seconds)
    tally.cpu_seconds += time.process_time() - started
    return rate


def keys_of(conversation: int, prefix: str) -> list[str]:
    return [f"{prefix}conversation/{conversation}", f"{prefix}user/{conversation}"]


def storage_turn(storage: CosmosStorage, tally: Tally) -> Turn:
    async def turn(conversation: int) -> None:
        keys = keys_of(conversation, "ours/")
        found = await storage.read(keys)
        await storage.write({key: WriteItem(DOCUMENT, if_match=found[key].etag) for key in keys})
        tally.turns += 1

    return turn


def raw_body(key: str) -> dict[str, Any]:
    """The item CosmosStorage would write for ``key``, so both sides send the same bytes."""
    return {"id": item_id(key), "key": key, "value": DOCUMENT.decode(), "expires_at": None, "ttl": -1}


def raw_turn(container: ContainerProxy, tally: Tally) -> Turn:
    async def turn(conversation: int) -> None:
        bodies = [raw_body(key) for key in keys_of(conversation, "raw/")]
        rows = await asyncio.gather(
            *(
                container.read_item(body["id"], partition_key=body["id"], response_hook=tally.hook)
                for body in bodies
            )
        )
        await asyncio.gather(
            *(
                container.replace_item(
                    body["id"],
                    body,
                    etag=row["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                    response_hook=tally.hook,
                )
                for body, row in zip(bodies, rows, strict=True)
            )
        )
        tally.turns += 1

    return turn


async def bench(server: CosmosTestServer, seconds: float, rounds: int, verified_tls: bool) -> None:
    options: dict[str, Any] = {"connection_timeout": TIMEOUT, "read_timeout": TIMEOUT}
    if verified_tls:
        options.update(client_options(server))
    storage = CosmosStorage(server.endpoint, EMULATOR_KEY, DATABASE, CONTAINER, **options)
    # The raw client gets its own options: the SDK fills in the ssl_config object it is given.
    raw_options = dict(options, **client_options(server)) if verified_tls else dict(options)
    client = CosmosClient(server.endpoint, EMULATOR_KEY, **raw_options)
    try:
        # The storage creates the database and container; both sides start from items that exist.
        await storage.write(
            {key: WriteItem(DOCUMENT) for n in range(max(LEVELS)) for key in keys_of(n, "ours/")}
        )
        container = client.get_database_client(DATABASE).get_container_client(CONTAINER)
        for n in range(max(LEVELS)):
            for key in keys_of(n, "raw/"):
                await container.upsert_item(raw_body(key))
        ours_tally, raw_tally = Tally(), Tally()
        ours, raw = storage_turn(storage, ours_tally), raw_turn(container, raw_tally)
        await ours(0)  # warm up: connections, container properties
        await raw(0)
        start = storage.charges
        ours_tally.reset()
        raw_tally.reset()

        tls = "verified TLS, a new connection per request" if verified_tls else "TLS, pooled connections"
        print(f"Cosmos test server on {server.endpoint} ({tls})")
        print("  a local in-memory test server: figures show client overhead, not Cosmos DB latency")
        print("one turn = 2 point reads at once + 2 replaces with If-Match on their ETags at once")
        print(
            f"  {'conversations':>13} {'CosmosStorage turns/s':>22} {'raw azure-cosmos turns/s':>25}"
            f" {'ours / raw':>11}"
        )
        for conversations in LEVELS:
            best_ours = best_raw = 0.0
            for _ in range(rounds):
                best_ours = max(best_ours, await timed(ours_tally, ours, conversations, seconds))
                best_raw = max(best_raw, await timed(raw_tally, raw, conversations, seconds))
                server.reset_requests()  # the server's request log would grow for the whole run
            ratio = best_ours / best_raw
            print(f"  {conversations:>13} {best_ours:>22,.0f} {best_raw:>25,.0f} {ratio:>10.0%}")

        charged, turns = storage.charges - start, ours_tally.turns
        ours_requests, ours_ru = charged.requests / turns, charged.request_units / turns
        raw_requests, raw_ru = raw_tally.requests / raw_tally.turns, raw_tally.request_units / raw_tally.turns
        print("per turn, from the recorded request charges (RU: the test server's model, see server.js):")
        ours_cpu = ours_tally.cpu_seconds / turns * 1e6
        raw_cpu = raw_tally.cpu_seconds / raw_tally.turns * 1e6
        print(f"  {'':>22} {'requests':>9} {'RU':>7} {'client CPU µs':>14} {'turns':>9}")
        print(
            f"  {'CosmosStorage':>22} {ours_requests:>9.2f} {ours_ru:>7.2f} {ours_cpu:>14,.0f} {turns:>9,}"
            f"  ({charged.point_reads / turns:.2f} point reads, {charged.writes / turns:.2f} writes,"
            f" {charged.queries / turns:.2f} queries)"
        )
        print(
            f"  {'raw azure-cosmos':>22} {raw_requests:>9.2f} {raw_ru:>7.2f} {raw_cpu:>14,.0f}"
            f" {raw_tally.turns:>9,}"
        )
        print(
            f"  {'ours / raw':>22} {ours_requests / raw_requests:>9.0%} {ours_ru / raw_ru:>7.0%}"
            f" {ours_cpu / raw_cpu:>14.0%}"
        )
    finally:
        await storage.aclose()
        await client.close()


def main() -> None:
    quick = "--quick" in sys.argv
    verified_tls = "--verified-tls" in sys.argv
    seconds, rounds = (0.4, 2) if quick else (1.5, 3)
    with tempfile.TemporaryDirectory() as workdir:
        server = CosmosTestServer(Path(workdir))
        try:
            server.start()
        except ServerError as exc:
            server.stop()
            raise SystemExit(f"could not start the Cosmos test server: {exc}") from exc
        try:
            asyncio.run(bench(server, seconds, rounds, verified_tls))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
