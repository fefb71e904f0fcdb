"""Real redis-server processes for the Redis storage tests: a standalone server and a 3-master cluster.

Every server listens on a free loopback port chosen here (never 6379) and is stopped by its fixture.
A missing or failing redis-server fails the tests with the reason; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import redis

from turnstate.testing.tls import self_signed_certificate

INSTALL_HINT = "install it with `apt-get install -y redis-server` (scripts/test does this)"


class ServerError(RuntimeError):
    """A test server could not be started."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise ServerError(f"redis-server is not on PATH; the Redis storage tests need it: {INSTALL_HINT}")
    return found


def free_port(*, with_bus: bool = False) -> int:
    """A loopback port nobody listens on (and, for cluster nodes, port + 10000 too)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port == 6379 or (with_bus and (port > 55535 or not _port_is_free(port + 10000))):
            continue
        return port
    raise ServerError("found no free loopback port for a test redis-server")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RedisServer:
    """One redis-server process that a test can stop, kill, pause and start again on the same port."""

    def __init__(
        self, workdir: Path, *, port: int | None = None, args: Iterable[str] = (), tls: bool = False
    ) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.args = list(args)
        self.certificate: Path | None = None
        if tls:
            workdir.mkdir(parents=True, exist_ok=True)
            self.certificate, key = self_signed_certificate(workdir)
            self.args += [
                *("--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"),
                *("--tls-cert-file", str(self.certificate), "--tls-key-file", str(key)),
                *("--tls-ca-cert-file", str(self.certificate)),
            ]
        self.unixsocket = str(workdir / "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.certificate else 'redis'}://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        # Unix socket paths are limited to about 100 bytes; a deep tmp dir goes without one.
        short = len(self.unixsocket) < 100
        unix = ["--unixsocket", self.unixsocket, "--unixsocketperm", "700"] if short else []
        command = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log),
            *unix,
            *self.args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise ServerError(f"redis-server on port {self.port} exited with {code}: {self.log_tail()}")
            try:
                with self.admin(timeout=0.5) as client:
                    # A restarted server answers LOADING until its append-only file is read back.
                    if client.ping() and client.info("persistence").get("loading", 0) == 0:
                        return
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.02)
        raise ServerError(
            f"redis-server on port {self.port} not ready after {timeout}s ({last}): {self.log_tail()}"
        )

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-8:])
        except OSError:
            return "(no log)"

    def admin(self, timeout: float = 5.0) -> redis.Redis:
        """A synchronous client for inspecting the server (commandstats, DEBUG, CONFIG...)."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            ssl=self.certificate is not None,
            ssl_ca_certs=str(self.certificate) if self.certificate else None,
        )

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def _stop(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if sig != signal.SIGKILL:
            os.kill(process.pid, signal.SIGCONT)
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server stops answering but keeps its connections open."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()


def command_calls(server_port: int) -> dict[str, int]:
    """The server's cumulative per-command call counts (INFO commandstats), e.g. {'get': 3, 'evalsha': 2}."""
    with redis.Redis(host="127.0.0.1", port=server_port) as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


_INSPECTION = frozenset({"info", "hello", "client|setinfo"})


def calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands run between two command_calls snapshots, leaving out the snapshots' own connections.

    Commands a script runs count too: a compare-and-set EVALSHA shows as evalsha, getrange, set (and
    exists when the key was absent).
    """
    delta = {name: after[name] - before.get(name, 0) for name in after}
    return {name: n for name, n in delta.items() if n and name not in _INSPECTION}


_CLUSTER_ARGS = (
    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
    *("--cluster-node-timeout", "5000"),
)


class RedisClusterNodes:
    """Three redis-server processes joined into a 3-master cluster with redis-cli --cluster create."""

    def __init__(self, workdir: Path, *, extra_args: Iterable[str] = ()) -> None:
        self.workdir = workdir
        self.nodes: list[RedisServer] = []
        ports: list[int] = []
        while len(ports) < 3:
            port = free_port(with_bus=True)
            if port not in ports and port + 10000 not in ports:
                ports.append(port)
        for port in ports:
            self.nodes.append(
                RedisServer(
                    workdir / f"node-{port}",
                    port=port,
                    args=[*_CLUSTER_ARGS, *extra_args],
                )
            )

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ServerError(f"redis-cli is not on PATH; the cluster tests need it: {INSTALL_HINT}")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        result = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(f"redis-cli --cluster create failed: {result.stdout!r} {result.stderr!r}")
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every node reports cluster_state:ok and sees all 16384 slots on three masters."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            try:
                states = []
                for node in self.nodes:
                    with node.admin(timeout=1) as client:
                        info = client.cluster("info")
                        masters = {tuple(s[2][:2]) for s in client.execute_command("CLUSTER SLOTS")}
                        states.append((info["cluster_state"], int(info["cluster_slots_ok"]), len(masters)))
                state = repr(states)
                if all(s == ("ok", 16384, 3) for s in states):
                    return
            except redis.RedisError as exc:
                state = repr(exc)
            time.sleep(0.1)
        raise ServerError(f"the test Redis Cluster did not reach cluster_state:ok within {timeout}s: {state}")

    def node_for(self, key: bytes) -> RedisServer:
        """The node that owns ``key``'s slot right now."""
        with self.nodes[0].admin() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        raise ServerError(f"no node owns the slot of {key!r}")

    def command_calls(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for node in self.nodes:
            for name, calls in command_calls(node.port).items():
                total[name] = total.get(name, 0) + calls
        return total

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
