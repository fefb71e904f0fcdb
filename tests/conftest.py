from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends import Backend, file_backend, memory_backend

BACKENDS = ["memory", "file"]
SHARED_BACKENDS = ["file"]


async def _backend(name: str, tmp_path: Path) -> Backend:
    if name == "memory":
        return memory_backend()
    if name == "file":
        return file_backend(tmp_path / "state")
    raise ValueError(name)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Every storage that has landed."""
    b = await _backend(request.param, tmp_path)
    yield b
    await b.close_all()


@pytest.fixture(params=SHARED_BACKENDS)
async def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Every storage that several processes can share."""
    b = await _backend(request.param, tmp_path)
    yield b
    await b.close_all()
