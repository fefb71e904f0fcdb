"""Start the local test servers, run ``turnstate bench`` against them and every local storage, stop them.

Used by scripts/bench; arguments go to ``turnstate bench``, except ``--storages NAME,...`` (of memory,
file, redis, cluster, cosmos, blob; default all), which picks the storages and starts only their servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for storage in ("redis", "cosmos", "blob"):
    sys.path.insert(0, str(ROOT / "storages" / storage / "tests"))

from azurite_server import Azurite  # noqa: E402  (the storages' test helpers, found through sys.path)
from cosmos_test_server import EMULATOR_KEY, CosmosTestServer  # noqa: E402
from redis_test_servers import RedisClusterNodes, RedisServer  # noqa: E402

STORAGES = ("memory", "file", "redis", "cluster", "cosmos", "blob")


def _picked(arguments: list[str]) -> tuple[list[str], list[str]]:
    """The storages named by --storages (all by default) and the arguments left for turnstate bench."""
    if "--storages" not in arguments:
        return list(STORAGES), arguments
    at = arguments.index("--storages")
    names = arguments[at + 1].split(",") if at + 1 < len(arguments) else []
    unknown = [name for name in names if name not in STORAGES]
    if unknown or not names:
        raise SystemExit(f"--storages takes names from {', '.join(STORAGES)}, got {names}")
    return names, arguments[:at] + arguments[at + 2 :]


def main(arguments: list[str]) -> int:
    picked, arguments = _picked(arguments)
    with tempfile.TemporaryDirectory(prefix="turnstate-bench-") as scratch:
        work = Path(scratch)
        servers: dict[str, Any] = {}
        try:
            if "redis" in picked:
                servers["redis"] = RedisServer(work / "redis")
            if "cluster" in picked:
                servers["cluster"] = RedisClusterNodes(work / "cluster")
            if "cosmos" in picked:
                servers["cosmos"] = CosmosTestServer(work / "cosmos")
            if "blob" in picked:
                servers["blob"] = Azurite(work / "azurite")
            for server in servers.values():
                server.start()
            urls = {"memory": "memory:", "file": f"file:{work / 'files'}"}
            environment = dict(os.environ)
            if "redis" in servers:
                urls["redis"] = servers["redis"].url
            if "cluster" in servers:
                urls["cluster"] = f"{servers['cluster'].url}?cluster=1"
            if "cosmos" in servers:
                host = servers["cosmos"].endpoint.removeprefix("https://").rstrip("/")
                # a self-signed certificate: with a CA file the SDK opens a connection per request
                urls["cosmos"] = f"cosmos://{host}/bench/state?verify=0"
                environment["TURNSTATE_COSMOS_KEY"] = EMULATOR_KEY
            if "blob" in servers:
                urls["blob"] = "blob:bench"
                environment["TURNSTATE_BLOB_CONNECTION_STRING"] = servers["blob"].connection_string
            chosen = [urls[name] for name in STORAGES if name in picked]
            command = [str(ROOT / ".venv" / "bin" / "turnstate"), "bench", *chosen, *arguments]
            return subprocess.run(command, env=environment, check=False).returncode
        finally:
            for server in reversed(list(servers.values())):
                server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
