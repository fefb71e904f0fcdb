"""``turnstate migrate`` at scale: 10,000 documents from File to Redis, whole and interrupted."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.cli_targets import SCRIPT, turnstate
from turnstate.document import encode, encode_data
from turnstate.storage.base import StoredItem, WriteItem
from turnstate.storage.file import FileStorage

COUNT = 10_000

pytestmark = pytest.mark.slow


async def seed(directory: Path) -> dict[str, StoredItem]:
    """COUNT documents, most with an expiry (each its own), some without; returns them as stored."""
    async with FileStorage(directory, fsync=False) as storage:
        keys = [f"user/channel=test/user=29:{i:05}" for i in range(COUNT)]
        for start in range(0, COUNT, 500):
            await storage.write(
                {
                    key: WriteItem(
                        encode(encode_data({"n": i, "name": f"user {i}"})),
                        ttl=None if i % 4 == 0 else 3600.0 + i,
                    )
                    for i, key in enumerate(keys[start : start + 500], start=start)
                }
            )
        return await storage.read(keys)


async def destination_items(url: str, prefix: str, keys: list[str]) -> dict[str, StoredItem]:
    from turnstate_redis import RedisStorage

    async with RedisStorage(url, key_prefix=prefix) as storage:
        found: dict[str, StoredItem] = {}
        for start in range(0, len(keys), 1000):
            found.update(await storage.read(keys[start : start + 1000]))
        return found


def same_documents(source: dict[str, StoredItem], copies: dict[str, StoredItem]) -> None:
    assert len(copies) == len(source) == COUNT
    for key, item in source.items():
        copy = copies[key]
        assert copy.value == item.value, key
        if item.expires_at is None:
            assert copy.expires_at is None, key
        else:
            assert copy.expires_at == pytest.approx(item.expires_at, abs=2), key


async def test_migrating_10000_documents_keeps_every_expiry(tmp_path: Path, scenario_redis: object) -> None:
    source = await seed(tmp_path / "state")
    redis_url: str = scenario_redis.url  # type: ignore[attr-defined]
    prefix = f"migrate-{uuid.uuid4().hex[:8]}:"
    result = turnstate("migrate", f"file:{tmp_path / 'state'}", f"{redis_url}?prefix={prefix}", timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"copied {COUNT}, already present 0" in result.stdout
    assert f"verified: {COUNT} of {COUNT}" in result.stdout
    assert f"copied {COUNT}/{COUNT} (100%)" in result.stderr
    same_documents(source, await destination_items(redis_url, prefix, sorted(source)))


async def test_an_interrupted_migrate_resumes_copying_each_document_once(
    tmp_path: Path, scenario_redis: object
) -> None:
    source = await seed(tmp_path / "state")
    keys = sorted(source)
    redis_url: str = scenario_redis.url  # type: ignore[attr-defined]
    prefix = f"migrate-{uuid.uuid4().hex[:8]}:"
    src, dst = f"file:{tmp_path / 'state'}", f"{redis_url}?prefix={prefix}"

    with subprocess.Popen(
        [str(SCRIPT), "migrate", src, dst, "--progress-every", "500"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        progress = []
        for line in process.stderr:
            progress.append(line)
            if line.startswith("copied ") and int(line.split()[1].split("/")[0]) > 5000:
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(progress)

    before = await destination_items(redis_url, prefix, keys)
    assert 5000 < len(before) < COUNT, len(before)  # killed half-way, not at the end
    for key, copy in before.items():
        assert copy.value == source[key].value

    resumed = turnstate("migrate", src, dst, "--yes", "--json", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = resumed.stdout.strip().splitlines()[-1]
    assert f'"written":{COUNT - len(before)}' in summary and f'"already_present":{len(before)}' in summary
    after = await destination_items(redis_url, prefix, keys)
    same_documents(source, after)
    # the documents copied before the kill were not written again
    assert {key: after[key].etag for key in before} == {key: item.etag for key, item in before.items()}
