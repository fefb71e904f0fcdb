"""Start the local test servers, run ``turnstate bench`` against them and every local storage, stop them.

Used by scripts/bench; arguments go to ``turnstate bench``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for storage in ("redis", "cosmos", "blob"):
    sys.path.insert(0, str(ROOT / "storages" / storage / "tests"))

from azurite_server import Azurite  # noqa: E402  (the storages' test helpers, found through sys.path)
from cosmos_test_server import EMULATOR_KEY, CosmosTestServer  # noqa: E402
from redis_test_servers import RedisClusterNodes, RedisServer  # noqa: E402


def main(arguments: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="turnstate-bench-") as scratch:
        work = Path(scratch)
        servers = [
            RedisServer(work / "redis"),
            RedisClusterNodes(work / "cluster"),
            CosmosTestServer(work / "cosmos"),
            Azurite(work / "azurite"),
        ]
        redis, cluster, cosmos, azurite = servers
        try:
            for server in servers:
                server.start()
            host = cosmos.endpoint.removeprefix("https://").rstrip("/")
            urls = [
                "memory:",
                f"file:{work / 'files'}",
                redis.url,
                f"{cluster.url}?cluster=1",
                # a self-signed certificate: with a CA file the SDK opens a connection per request
                f"cosmos://{host}/bench/state?verify=0",
                "blob:bench",
            ]
            environment = {
                **os.environ,
                "TURNSTATE_COSMOS_KEY": EMULATOR_KEY,
                "TURNSTATE_BLOB_CONNECTION_STRING": azurite.connection_string,
            }
            command = [str(ROOT / ".venv" / "bin" / "turnstate"), "bench", *urls, *arguments]
            return subprocess.run(command, env=environment, check=False).returncode
        finally:
            for server in reversed(servers):
                server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
