"""The conformance suite as another project runs it: in pytest-asyncio's strict mode and in auto mode."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SUBCLASS = """
import pytest
import pytest_asyncio

from turnstate.storage.memory import MemoryStorage
from turnstate.testing import ManualClock, StorageConformance


class TestMyStorage(StorageConformance):
    @pytest.fixture
    def clock(self):
        return ManualClock()

    @pytest_asyncio.fixture
    async def storage(self, clock):
        async with MemoryStorage(clock=clock) as storage:
            yield storage
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_a_subclass_passes_in_either_asyncio_mode(tmp_path: Path, mode: str) -> None:
    (tmp_path / "test_my_storage.py").write_text(SUBCLASS)
    # Its own ini file, so nothing of this project's pytest configuration applies.
    ini = f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
    (tmp_path / "pytest.ini").write_text(ini)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in .*", summary), summary
    assert int(summary.split()[0]) > 40
