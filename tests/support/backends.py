"""Storages the scenario tests run against: every backend that claims the capability under test.

A :class:`Backend` opens new storage objects over the same data (another bot instance, or a restarted
one) and describes itself as a JSON spec so a subprocess can open it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from turnstate.storage.base import Storage
from turnstate.storage.file import FileStorage
from turnstate.storage.memory import MemoryStorage

WORKER = Path(__file__).with_name("scenario_worker.py")


class Backend:
    """One storage configuration; ``open()`` gives a new storage object over the same data."""

    def __init__(
        self, name: str, spec: dict[str, Any], opener: Callable[[], Storage], *, shared: bool
    ) -> None:
        self.name = name
        self.spec = spec
        self._opener = opener
        self.shared = shared
        self.opened: list[Storage] = []

    def open(self) -> Storage:
        storage = self._opener()
        self.opened.append(storage)
        return storage

    async def close_all(self) -> None:
        for storage in self.opened:
            await storage.aclose()
        if self.spec["kind"] == "blob":  # each test has a container of its own (on a real account too)
            from azure.storage.blob.aio import BlobServiceClient

            async with BlobServiceClient.from_connection_string(self.spec["connection_string"]) as service:
                container = service.get_container_client(self.spec["container"])
                if await container.exists():
                    await container.delete_container()

    async def raw_bytes(self) -> bytes:
        """Everything this backend holds, exactly as the backing store keeps it (files, Redis values)."""
        kind = self.spec["kind"]
        if kind == "memory":
            storage = self.opened[0] if self.opened else self.open()
            keys = [k async for k in storage.list_keys()]
            return b"".join(item.value for item in (await storage.read(keys)).values())
        if kind == "file":
            return b"".join(p.read_bytes() for p in Path(self.spec["path"]).rglob("*") if p.is_file())
        if kind == "blob":
            from azure.storage.blob.aio import BlobServiceClient

            connection_string = self.spec["connection_string"]
            async with BlobServiceClient.from_connection_string(connection_string) as service:
                container = service.get_container_client(self.spec["container"])
                chunks = []
                async for properties in container.list_blobs(include=["metadata"]):
                    downloaded = await container.download_blob(properties.name)
                    chunks.append(await downloaded.readall())
                    chunks.append(json.dumps(properties.metadata).encode())
            return b"".join(chunks)
        if kind == "cosmos":
            import json as json_module

            from azure.cosmos import SSLConfiguration
            from azure.cosmos.aio import CosmosClient

            ssl = SSLConfiguration()
            ssl.SSLCaCerts = ssl.SSLCertFile = self.spec["certificate"]
            ssl.SSLKeyFile = self.spec["certificate_key"]
            async with CosmosClient(self.spec["endpoint"], self.spec["credential"], ssl_config=ssl) as cosmos:
                container = cosmos.get_database_client(self.spec["database"]).get_container_client("state")
                rows = [row async for row in container.query_items("SELECT * FROM c")]
            return json_module.dumps(rows).encode()
        import redis.asyncio as aioredis

        client: Any = (
            aioredis.RedisCluster.from_url(self.spec["url"])
            if kind == "redis-cluster"
            else aioredis.Redis.from_url(self.spec["url"])
        )
        try:
            chunks = []
            async for name in client.scan_iter(match=self.spec["prefix"] + "*"):
                chunks.append(await client.get(name))
            return b"".join(chunks)
        finally:
            await client.aclose()

    def run_worker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run tests/support/scenario_worker.py against this backend in a new process."""
        if not self.shared:
            raise RuntimeError(f"{self.name} storage is not shared between processes")
        return subprocess.run(
            [sys.executable, str(WORKER), json.dumps(self.spec), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PYTHONPATH": str(WORKER.parents[2])},
        )

    def start_worker(self, *args: str) -> subprocess.Popen[str]:
        if not self.shared:
            raise RuntimeError(f"{self.name} storage is not shared between processes")
        return subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(self.spec), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(WORKER.parents[2])},
        )


def open_spec(spec: dict[str, Any]) -> Storage:
    """Open a storage from a Backend spec (used by worker processes)."""
    kind = spec["kind"]
    if kind == "file":
        return FileStorage(spec["path"], fsync=False)
    if kind == "cosmos":
        from azure.cosmos import SSLConfiguration
        from turnstate_cosmos import CosmosStorage

        ssl = SSLConfiguration()
        ssl.SSLCaCerts = ssl.SSLCertFile = spec["certificate"]
        ssl.SSLKeyFile = spec["certificate_key"]
        return CosmosStorage(spec["endpoint"], spec["credential"], spec["database"], "state", ssl_config=ssl)
    if kind == "blob":
        from turnstate_blob import BlobStorage

        return BlobStorage(
            spec["container"], connection_string=spec["connection_string"], create_container=True
        )
    if kind in ("redis", "redis-cluster"):
        from turnstate_redis import RedisStorage

        return RedisStorage(spec["url"], key_prefix=spec["prefix"], cluster=kind == "redis-cluster")
    raise ValueError(f"cannot open a {kind!r} storage in another process")


def memory_backend() -> Backend:
    shared = MemoryStorage()
    return Backend("memory", {"kind": "memory"}, lambda: shared, shared=False)


def file_backend(directory: Path) -> Backend:
    spec = {"kind": "file", "path": str(directory)}
    return Backend("file", spec, lambda: open_spec(spec), shared=True)


def cosmos_backend(endpoint: str, credential: str, certificate: str, certificate_key: str) -> Backend:
    spec = {
        "kind": "cosmos",
        "endpoint": endpoint,
        "credential": credential,
        "certificate": certificate,
        "certificate_key": certificate_key,
        "database": f"scenario-{uuid.uuid4().hex[:8]}",
    }
    return Backend("cosmos", spec, lambda: open_spec(spec), shared=True)


def blob_backend(connection_string: str) -> Backend:
    spec = {
        "kind": "blob",
        "connection_string": connection_string,
        "container": f"scenario-{uuid.uuid4().hex[:12]}",
    }
    return Backend("blob", spec, lambda: open_spec(spec), shared=True)


def redis_backend(url: str, *, cluster: bool) -> Backend:
    kind = "redis-cluster" if cluster else "redis"
    spec = {"kind": kind, "url": url, "prefix": f"scenario-{uuid.uuid4().hex[:8]}:"}
    return Backend(kind, spec, lambda: open_spec(spec), shared=True)
