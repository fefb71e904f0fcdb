"""The peers: the same turn (see :mod:`turnstate.bench.workload`) done without turnstate.

- ``botbuilder-core``: the Bot Framework SDK's ConversationState and UserState with property accessors,
  on its MemoryStorage.
- ``agents-sdk``: the Microsoft 365 Agents SDK's ConversationState and UserState (new ones every turn,
  as its AgentApplication builds them), on its MemoryStorage.
- ``redis-py``, ``azure-cosmos``, ``azure-storage-blob``: the server's own client used by hand, the way a
  careful bot would without a state layer: read both documents at once, decode the JSON, change the same
  fields, encode, and write both at once with a compare-and-set on the version read (a Lua script on
  Redis, If-Match on Cosmos DB and Blob Storage).

The SDK peers keep documents in process memory and are compared on ``memory:``; the raw clients talk
to the server of the URL being benchmarked, under keys of their own. Every peer is optional: one whose
package is missing is left out of the run (``pip install 'turnstate[bench]'`` installs them all).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from turnstate.bench.results import Reading
from turnstate.bench.workload import activity, history, text_of

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _changed(document: dict[str, Any] | None, number: int, pad: str) -> dict[str, Any]:
    """The conversation document after the turn's changes."""
    talk: dict[str, Any] = dict(document) if document else {"history": pad}
    talk["count"] = int(talk.get("count", 0)) + 1
    talk["last"] = text_of(number)
    return talk


def _seen(document: dict[str, Any] | None, number: int) -> dict[str, Any]:
    """The user document after the turn's change."""
    return {**(document or {}), "last_seen": number}


class _Counter:
    """Requests a raw client made and the Cosmos DB request units they cost (from a response hook)."""

    def __init__(self) -> None:
        self.requests = 0
        self.request_units = 0.0

    def hook(self, headers: Mapping[str, Any], _body: Any) -> None:
        self.requests += 1
        self.request_units += float(headers.get("x-ms-request-charge", 0) or 0)


class StorageCharges:
    """The requests and request units a storage reports in ``storage.charges`` (CosmosStorage does)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    @staticmethod
    def available(storage: Any) -> bool:
        charges = getattr(storage, "charges", None)
        return hasattr(charges, "requests") and hasattr(charges, "request_units")

    async def reading(self) -> Reading:
        charges = self._storage.charges
        return Reading(requests=float(charges.requests), request_units=float(charges.request_units))


# -- the SDKs' state, on their own MemoryStorage ----------------------------------------------------------


class BotbuilderPeer:
    name = "botbuilder-core"

    def __init__(self, run: str, document_bytes: int) -> None:
        from botbuilder.core import BotAdapter, ConversationState, MemoryStorage, TurnContext, UserState
        from botbuilder.schema import Activity

        class Adapter(BotAdapter):  # type: ignore[misc]
            async def send_activities(self, context: Any, activities: Any) -> list[Any]:
                return []

            async def update_activity(self, context: Any, activity: Any) -> None:
                return None

            async def delete_activity(self, context: Any, reference: Any) -> None:
                return None

        self._model, self._context = Activity, TurnContext
        self._adapter, self._run, self._pad = Adapter(), run, history(document_bytes)
        storage = MemoryStorage()
        self._conversation, self._user = ConversationState(storage), UserState(storage)
        self._count = self._conversation.create_property("count")
        self._last = self._conversation.create_property("last")
        self._history = self._conversation.create_property("history")
        self._seen = self._user.create_property("last_seen")

    async def turn(self, conversation: int, number: int) -> None:
        incoming = self._model().deserialize(activity(self._run, conversation, number))
        context = self._context(self._adapter, incoming)
        await self._conversation.load(context)
        await self._user.load(context)
        await self._count.set(context, (await self._count.get(context) or 0) + 1)
        await self._last.set(context, text_of(number))
        if await self._history.get(context) is None:
            await self._history.set(context, self._pad)
        await self._seen.set(context, number)
        await self._conversation.save_changes(context)
        await self._user.save_changes(context)

    async def forget(self) -> None:
        """Its documents live in its own memory."""

    async def aclose(self) -> None:
        """Nothing to close."""


class AgentsPeer:
    name = "agents-sdk"

    def __init__(self, run: str, document_bytes: int) -> None:
        from microsoft_agents.activity import Activity
        from microsoft_agents.hosting.core import (
            ChannelAdapter,
            ConversationState,
            MemoryStorage,
            TurnContext,
            UserState,
        )

        class Adapter(ChannelAdapter):
            async def send_activities(self, *_: Any) -> list[Any]:
                return []

            async def update_activity(self, *_: Any) -> None:
                return None

            async def delete_activity(self, *_: Any) -> None:
                return None

        self._model, self._context = Activity, TurnContext
        self._states = ConversationState, UserState
        self._adapter: Any = Adapter()  # type: ignore[no-untyped-call]
        self._run, self._pad = run, history(document_bytes)
        self._storage = MemoryStorage()

    async def turn(self, conversation: int, number: int) -> None:
        incoming = self._model.model_validate(activity(self._run, conversation, number))
        context = self._context(self._adapter, incoming)
        make_conversation, make_user = self._states
        talk: Any = make_conversation(self._storage)
        user: Any = make_user(self._storage)
        await talk.load(context)
        await user.load(context)
        talk.set_value("count", (talk.get_value("count") or 0) + 1)
        talk.set_value("last", text_of(number))
        if talk.get_value("history") is None:
            talk.set_value("history", self._pad)
        user.set_value("last_seen", number)
        await talk.save(context)
        await user.save(context)

    async def forget(self) -> None:
        """Its documents live in its own memory."""

    async def aclose(self) -> None:
        """Nothing to close."""


# -- raw clients ------------------------------------------------------------------------------------------

# Compare-and-set of one value stored as "<16-hex etag>|<json>": ARGV[1] the etag read ("" = must be
# absent), ARGV[2] the new value. Returns 1 when written.
_REDIS_CAS = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return 0 end
elseif not current or string.sub(current, 1, 16) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class RedisPeer:
    name = "redis-py"

    def __init__(self, client: Any, run: str, document_bytes: int) -> None:
        self._client, self._run, self._pad = client, run, history(document_bytes)
        self._sha = ""
        primaries = getattr(client, "PRIMARIES", None)  # a RedisCluster: ask every master
        self._every_node: dict[str, Any] = {} if primaries is None else {"target_nodes": primaries}

    @classmethod
    async def connect(cls, url: str, cluster: bool, run: str, document_bytes: int) -> RedisPeer:
        import redis.asyncio

        options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        client: Any
        if cluster:
            client = redis.asyncio.RedisCluster.from_url(url, **options)
        else:
            client = redis.asyncio.Redis.from_url(url, **options)
        peer = cls(client, run, document_bytes)
        peer._sha = await client.script_load(_REDIS_CAS)
        return peer

    def _names(self, conversation: int) -> list[str]:
        # one hash tag per conversation: a Lua script may touch one slot only, and each key is its own call
        return [
            f"bench-raw:{self._run}:conversation:{conversation}",
            f"bench-raw:{self._run}:user:{conversation}",
        ]

    async def turn(self, conversation: int, number: int) -> None:
        names = self._names(conversation)
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
        stored = await pipe.execute()
        etags: list[bytes] = []
        documents: list[dict[str, Any] | None] = []
        for raw in stored:
            if raw is None:
                etags.append(b"")
                documents.append(None)
            else:
                etags.append(raw[:16])
                documents.append(_decode(raw[17:]))
        values = [_changed(documents[0], number, self._pad), _seen(documents[1], number)]
        pipe = self._client.pipeline(transaction=False)
        for name, etag, value in zip(names, etags, values, strict=True):
            pipe.evalsha(self._sha, 1, name, etag, os.urandom(8).hex().encode() + b"|" + _encode(value))
        if await pipe.execute() != [1, 1]:
            raise RuntimeError(f"the raw redis-py compare-and-set lost a race on {names}")

    async def reading(self) -> Reading:
        """Commands the server ran (those its scripts ran included) and its CPU time, every master's for
        a cluster, with the commands of each."""
        info = await self._client.info("stats", "cpu", **self._every_node)
        nodes = {"server": info} if "total_commands_processed" in info else info
        commands = {name: float(node["total_commands_processed"]) for name, node in nodes.items()}
        cpu = sum(float(node["used_cpu_user"]) + float(node["used_cpu_sys"]) for node in nodes.values())
        return Reading(requests=sum(commands.values()), server_cpu=cpu, nodes=commands)

    async def server(self) -> str:
        """ "redis VERSION" (with the node count, for a cluster)."""
        info = await self._client.info("server", **self._every_node)
        if "redis_version" in info:
            return f"redis {info['redis_version']}"
        versions = sorted({node["redis_version"] for node in info.values()})
        return f"redis {', '.join(versions)}, {len(info)} nodes"

    async def forget(self) -> None:
        """Delete the keys this peer wrote."""
        names = [name async for name in self._client.scan_iter(match=f"bench-raw:{self._run}:*")]
        for name in names:
            await self._client.delete(name)

    async def aclose(self) -> None:
        await self._client.aclose()


class CosmosPeer:
    name = "azure-cosmos"

    def __init__(self, client: Any, container: Any, run: str, document_bytes: int) -> None:
        self._client, self._container, self._run = client, container, run
        self._pad = history(document_bytes)
        self.counter = _Counter()
        self._conversations = 0

    @classmethod
    def connect(cls, settings: Any, run: str, document_bytes: int) -> CosmosPeer:
        from azure.cosmos.aio import CosmosClient

        client = CosmosClient(settings.endpoint, settings.credential, **settings.options)
        container = client.get_database_client(settings.database).get_container_client(settings.container)
        return cls(client, container, run, document_bytes)

    async def _read(self, item: str) -> dict[str, Any] | None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            found: dict[str, Any] = await self._container.read_item(
                item, partition_key=item, response_hook=self.counter.hook
            )
            return found
        except CosmosResourceNotFoundError:
            self.counter.requests += 1
            return None

    async def _write(self, item: str, stored: dict[str, Any] | None, document: dict[str, Any]) -> None:
        from azure.core import MatchConditions

        body = {"id": item, "document": document}
        if stored is None:
            await self._container.create_item(body, response_hook=self.counter.hook)
        else:
            await self._container.replace_item(
                item,
                body,
                etag=stored["_etag"],
                match_condition=MatchConditions.IfNotModified,
                response_hook=self.counter.hook,
            )

    async def turn(self, conversation: int, number: int) -> None:
        self._conversations = max(self._conversations, conversation + 1)
        items = [
            f"bench-raw-{self._run}-conversation-{conversation}",
            f"bench-raw-{self._run}-user-{conversation}",
        ]
        stored = await asyncio.gather(*(self._read(item) for item in items))
        talk, seen = (row["document"] if row else None for row in stored)
        documents = [_changed(talk, number, self._pad), _seen(seen, number)]
        await asyncio.gather(
            *(self._write(i, s, d) for i, s, d in zip(items, stored, documents, strict=True))
        )

    async def reading(self) -> Reading:
        return Reading(requests=float(self.counter.requests), request_units=self.counter.request_units)

    async def forget(self) -> None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        for conversation in range(self._conversations):
            for kind in ("conversation", "user"):
                try:
                    item = f"bench-raw-{self._run}-{kind}-{conversation}"
                    await self._container.delete_item(item, partition_key=item)
                except CosmosResourceNotFoundError:
                    pass

    async def aclose(self) -> None:
        await self._client.close()


class BlobPeer:
    name = "azure-storage-blob"

    def __init__(self, container: Any, run: str, document_bytes: int) -> None:
        self._container, self._run, self._pad = container, run, history(document_bytes)

    async def _read(self, name: str) -> tuple[str | None, dict[str, Any] | None]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = await self._container.download_blob(name)
        except ResourceNotFoundError:
            return None, None
        document: dict[str, Any] = _decode(await downloader.readall())
        return downloader.properties.etag, document

    async def _write(self, name: str, etag: str | None, document: dict[str, Any]) -> None:
        from azure.core import MatchConditions

        data = _encode(document)
        if etag is None:
            await self._container.upload_blob(name, data, overwrite=False)
        else:
            await self._container.upload_blob(
                name, data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
            )

    async def turn(self, conversation: int, number: int) -> None:
        names = [
            f"bench-raw/{self._run}/conversation/{conversation}",
            f"bench-raw/{self._run}/user/{conversation}",
        ]
        (talk_etag, talk), (user_etag, seen) = await asyncio.gather(*(self._read(n) for n in names))
        await asyncio.gather(
            self._write(names[0], talk_etag, _changed(talk, number, self._pad)),
            self._write(names[1], user_etag, _seen(seen, number)),
        )

    async def forget(self) -> None:
        names = [
            blob.name async for blob in self._container.list_blobs(name_starts_with=f"bench-raw/{self._run}/")
        ]
        for name in names:
            await self._container.delete_blob(name)

    async def aclose(self) -> None:
        """The container client is the storage's."""
