"""A Cosmos DB compatible server for the tests: @vercel/cosmosdb-server under node, on a free loopback port.

The server is pinned in ``storages/cosmos/testserver`` (package.json and package-lock.json); when its
``node_modules`` is missing it is installed with ``npm ci`` first. It speaks HTTPS with a certificate for
127.0.0.1 made here, which the tests' clients trust explicitly. A missing node or npm, or a server that
does not start, raises ServerError: the tests fail with the reason, they are never skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.cosmos import SSLConfiguration
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import CosmosResourceNotFoundError
from turnstate_cosmos import CosmosStorage

from turnstate.testing.tls import self_signed_certificate

TESTSERVER_DIR = Path(__file__).resolve().parent.parent / "testserver"
INSTALL_HINT = "install Node.js >= 20 and npm; scripts/test then installs the test server's packages"
START_TIMEOUT = 30.0
NPM_TIMEOUT = 300.0
EXPIRY_DEADLINE = 15.0  # seconds to wait for the server to expire an item

# The account key the Cosmos DB emulator documents; the test server accepts any key.
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


class ServerError(RuntimeError):
    """The test server could not be started."""


@dataclass(frozen=True)
class LoggedRequest:
    """One request the test server answered (see server.js for the operations and the charge model)."""

    method: str
    path: str
    operation: str  # read, create, replace, upsert, patch, delete, query, batch or other
    status: int
    charge: float


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: Any


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"{name} is not on PATH; the Cosmos storage tests need it: {INSTALL_HINT}")
    return found


def ensure_installed() -> None:
    """Run ``npm ci`` in testserver/ when its node_modules is missing."""
    if (TESTSERVER_DIR / "node_modules" / "@vercel" / "cosmosdb-server").is_dir():
        return
    npm = _tool("npm")
    command = [npm, "ci", "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(
            command, cwd=TESTSERVER_DIR, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"`npm ci` in {TESTSERVER_DIR} did not finish in {NPM_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise ServerError(f"`npm ci` in {TESTSERVER_DIR} failed ({done.returncode}): {done.stderr[-2000:]}")


class CosmosTestServer:
    """One node process running the test server; ``endpoint`` and ``certificate`` once started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.certificate = workdir / "cert.pem"
        self.key = workdir / "key.pem"
        self._stderr: list[str] = []
        self._drainer: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def start(self) -> None:
        node = _tool("node")
        ensure_installed()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certificate, self.key = self_signed_certificate(self.workdir)
        self.process = subprocess.Popen(
            [node, str(TESTSERVER_DIR / "server.js"), str(self.certificate), str(self.key)],
            cwd=TESTSERVER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_ENV": "production"},
        )
        self._drainer = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drainer.start()
        ready = threading.Event()
        line: list[str] = []

        def first_line() -> None:
            assert self.process is not None and self.process.stdout is not None
            line.append(self.process.stdout.readline())
            ready.set()

        threading.Thread(target=first_line, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or not line[0].startswith("listening "):
            self.stop()
            shown = "".join(self._stderr)[-2000:] or "(nothing on stderr)"
            raise ServerError(f"the Cosmos test server did not start in {START_TIMEOUT:.0f} s: {shown}")
        self.port = int(line[0].split()[1])

    def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for text in self.process.stderr:
            self._stderr.append(text)

    def raw(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> RawResponse:
        """One HTTPS request to the server as it is, error statuses included; a JSON body is decoded."""
        context = ssl.create_default_context(cafile=str(self.certificate))
        request = urllib.request.Request(f"{self.endpoint}{path.lstrip('/')}", method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            reply = urllib.request.urlopen(request, context=context, timeout=10)
        except urllib.error.HTTPError as error:
            reply = error
        with reply:
            body: bytes = reply.read()
            found = {name.lower(): value for name, value in reply.headers.items()}
            status = reply.status
        decoded: Any = json.loads(body) if found.get("content-type") == "application/json" else body
        return RawResponse(status, found, decoded)

    def requests(self) -> list[LoggedRequest]:
        """The requests the server answered since the last reset, oldest first."""
        seen = self.raw("GET", "/__turnstate/requests").body["requests"]
        return [LoggedRequest(**entry) for entry in seen]

    def reset_requests(self) -> None:
        self.raw("POST", "/__turnstate/requests/reset")

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if self._drainer is not None:
            self._drainer.join(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


MakeStorage = Callable[..., CosmosStorage]


def client_options(server: CosmosTestServer) -> dict[str, Any]:
    """CosmosClient options that trust the server's own certificate.

    The SDK skips certificate checks for 127.0.0.1 unless an ``ssl_config`` is given, and with one it
    also loads a client certificate, so the server's certificate and key serve as that too (the server
    does not ask for one). TLS is therefore verified against the test certificate.
    """
    ssl = SSLConfiguration()
    ssl.SSLCaCerts = str(server.certificate)
    ssl.SSLCertFile = str(server.certificate)
    ssl.SSLKeyFile = str(server.key)
    return {"ssl_config": ssl}


async def wait_until_gone(container: ContainerProxy, name: str) -> None:
    """Poll a point read of item ``name`` until the server answers 404; AssertionError after the deadline."""
    deadline = time.monotonic() + EXPIRY_DEADLINE
    while time.monotonic() < deadline:
        try:
            await container.read_item(name, partition_key=name)
        except CosmosResourceNotFoundError:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"item {name!r} was still there {EXPIRY_DEADLINE:.0f} s later")
