"""Azurite, the Azure Storage emulator, for the tests: its blob service under node, on a free loopback port.

Azurite is pinned in ``storages/blob/testserver`` (package.json and package-lock.json); when its
``node_modules`` is missing it is installed with ``npm ci`` first. A missing node or npm, or an emulator
that does not start, raises ServerError: the tests fail with the reason, they are never skipped.

With TURNSTATE_BLOB_CONNECTION_STRING set, :func:`account` is that real account instead (the fault tests,
which stop and restart the server, always run their own Azurite).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from turnstate_blob import BlobStorage

TESTSERVER_DIR = Path(__file__).resolve().parent.parent / "testserver"
AZURITE_BLOB = TESTSERVER_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
INSTALL_HINT = "install Node.js >= 20 and npm; scripts/test then installs Azurite's packages"
START_TIMEOUT = 30.0
NPM_TIMEOUT = 300.0
REAL_ACCOUNT_VARIABLE = "TURNSTATE_BLOB_CONNECTION_STRING"

# Azurite's documented development account. It only ever signs requests to the local emulator.
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


MakeStorage = Callable[..., BlobStorage]


class ServerError(RuntimeError):
    """Azurite could not be started."""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"{name} is not on PATH; the Blob storage tests need it: {INSTALL_HINT}")
    return found


def ensure_installed() -> None:
    """Run ``npm ci`` in testserver/ when Azurite is missing."""
    if AZURITE_BLOB.is_file():
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
    if not AZURITE_BLOB.is_file():
        raise ServerError(f"`npm ci` in {TESTSERVER_DIR} did not install {AZURITE_BLOB}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            sock.settimeout(2)
            return sock.recv(12).startswith(b"HTTP/1.1")
    except OSError:
        return False


class Azurite:
    """One Azurite blob service process, keeping its data in ``workdir``; stop and start it at will.

    A restart comes back on the same port with the same data directory.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._drainer: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def start(self) -> None:
        node = _tool("node")
        ensure_installed()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port else 5  # a restart keeps its port; a first start may lose a port race
        for _ in range(attempts):
            port = self.port or free_port()
            self._stderr = []
            self.process = subprocess.Popen(
                [
                    node,
                    str(AZURITE_BLOB),
                    *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
                    *("--location", str(self.workdir / "data")),
                    *("--silent", "--skipApiVersionCheck", "--loose"),
                    "--disableTelemetry",  # Azurite would otherwise report usage over the network
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            self._drainer = threading.Thread(target=self._drain_stderr, daemon=True)
            self._drainer.start()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                if _answers(port):
                    self.port = port
                    return
                time.sleep(0.05)
            self._reap()
        shown = "".join(self._stderr)[-2000:] or "(nothing on stderr)"
        raise ServerError(f"Azurite did not start on 127.0.0.1 in {START_TIMEOUT:.0f} s: {shown}")

    def _drain_stderr(self) -> None:
        process = self.process
        assert process is not None and process.stderr is not None
        for text in process.stderr:
            self._stderr.append(text)

    def _reap(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if self._drainer is not None:
            self._drainer.join(timeout=10)
        if process.stderr is not None:
            process.stderr.close()

    def terminate(self) -> None:
        """Stop it with SIGTERM: Azurite saves its metadata store and exits."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._reap()
            raise ServerError("Azurite did not shut down within 10 s of SIGTERM; it was killed") from None
        self._reap()

    def kill(self) -> None:
        """SIGKILL: no shutdown. Azurite saves its metadata every 5 s, so the last writes may be lost."""
        self._reap()

    def stop(self) -> None:
        """End it, data no longer needed (SIGKILL, since a graceful shutdown waits for idle connections)."""
        self._reap()


def started_azurite(azurite: Azurite) -> Azurite:
    """Start it, or fail the test (never skip) with the reason."""
    try:
        azurite.start()
    except ServerError as exc:
        azurite.stop()
        pytest.fail(f"could not start Azurite, which the Blob storage tests need: {exc}", pytrace=False)
    return azurite


@dataclass(frozen=True)
class Account:
    """Where the tests store blobs: Azurite's connection string, or a real account's."""

    connection_string: str
    real: bool

    def new_container(self, purpose: str = "test") -> str:
        """A fresh container name (3-63 lower-case letters, digits and hyphens)."""
        return f"ts-{purpose}-{uuid.uuid4().hex[:16]}"[:63]


def real_account() -> Account | None:
    value = os.environ.get(REAL_ACCOUNT_VARIABLE, "").strip()
    return Account(value, real=True) if value else None
