"""Run the installed ``turnstate`` console script against the test suite's storages, named by URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.backends import Backend

SCRIPT = Path(sys.executable).with_name("turnstate")


def storage_url(backend: Backend) -> str:
    """The URL that names ``backend``'s data on the command line."""
    spec = backend.spec
    kind = spec["kind"]
    if kind == "file":
        return f"file:{spec['path']}?fsync=0"
    if kind in ("redis", "redis-cluster"):
        cluster = "&cluster=1" if kind == "redis-cluster" else ""
        return f"{spec['url']}?prefix={spec['prefix']}{cluster}"
    if kind == "cosmos":
        host = spec["endpoint"].removeprefix("https://").rstrip("/")
        return f"cosmos://{host}/{spec['database']}/state?ca={spec['certificate']}"
    if kind == "blob":
        return f"blob:{spec['container']}"
    raise ValueError(kind)


def backend_env(backend: Backend) -> dict[str, str]:
    kind = backend.spec["kind"]
    if kind == "cosmos":
        return {"TURNSTATE_COSMOS_KEY": backend.spec["credential"]}
    if kind == "blob":
        return {"TURNSTATE_BLOB_CONNECTION_STRING": backend.spec["connection_string"]}
    return {}


def turnstate(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the console script; stdin is not a terminal."""
    environment: dict[str, Any] = {
        k: v for k, v in os.environ.items() if k not in ("TURNSTATE_KEYS", "TURNSTATE_STORAGE")
    }
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=stdin if stdin is not None else "",
        env={**environment, **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single ``error:`` line of a failed run that exited with ``code``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]
