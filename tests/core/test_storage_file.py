from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnstate.errors import (
    CorruptDocumentError,
    InvalidItemError,
    PreconditionFailedError,
    StorageUnavailableError,
)
from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage, encode_key
from turnstate.storage.filelocks import THREAD_LOCKS
from turnstate.testing import ManualClock, StorageConformance


class TestFileConformance(StorageConformance):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    async def storage(self, tmp_path: Path, clock: ManualClock) -> AsyncIterator[FileStorage]:
        async with FileStorage(tmp_path / "state", clock=clock) as storage:
            yield storage


# -- layout and format ---------------------------------------------------------------------------------


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_file()}


async def test_creates_missing_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state"
    storage = FileStorage(target)
    assert target.is_dir()
    await storage.write({"k": WriteItem(b"{}")})
    assert files_in(target) == {"k"}
    assert storage.path == str(target)


async def test_file_is_an_envelope_with_the_value_embedded_byte_for_byte(tmp_path: Path) -> None:
    clock = ManualClock()
    storage = FileStorage(tmp_path, clock=clock)
    value = b'{"b":[1,2.5e3,null],"s":"\\u00fc\\n\xc3\xbc","a":{}}'
    etag = (await storage.write({"conv/Abc": WriteItem(value, ttl=30)}))["conv/Abc"]
    raw = Path(storage.path_for("conv/Abc")).read_bytes()
    assert raw.count(value) == 1
    envelope = json.loads(raw)
    assert envelope == {
        "format": 1,
        "key": "conv/Abc",
        "etag": etag,
        "expires_at": clock.now + 30,
        "value": json.loads(value),
    }
    assert (await storage.read(["conv/Abc"]))["conv/Abc"].value == value


async def test_expiry_is_absolute_wall_clock_shared_by_instances(tmp_path: Path) -> None:
    """A second instance (another process, say) sees the expiry the first one stored."""
    await FileStorage(tmp_path).write({"k": WriteItem(b"{}", ttl=3600)})
    expires_at = json.loads(Path(FileStorage(tmp_path).path_for("k")).read_bytes())["expires_at"]
    assert time.time() + 3500 < expires_at <= time.time() + 3600
    late = ManualClock()
    late.now = expires_at
    assert await FileStorage(tmp_path, clock=late).read(["k"]) == {}
    late.now = expires_at - 1
    assert list(await FileStorage(tmp_path, clock=late).read(["k"])) == ["k"]


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[1,2]", b'"s"', b" {}", b"{}\n", b'{"a":1', b'{"a":1}{"b":2}', b"\xff"],
    ids=repr,
)
async def test_value_that_is_not_one_json_object_is_refused(tmp_path: Path, value: bytes) -> None:
    storage = FileStorage(tmp_path)
    with pytest.raises(InvalidItemError) as info:
        await storage.write({"good": WriteItem(b"{}"), "bad": WriteItem(value)})
    assert info.value.key == "bad"
    assert files_in(tmp_path) == set()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


def test_any_encoded_object_round_trips_byte_for_byte(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    loop = asyncio.new_event_loop()

    async def round_trip(value: bytes) -> bytes:
        await storage.write({"k": WriteItem(value)})
        return (await storage.read(["k"]))["k"].value

    @settings(max_examples=100, deadline=None)
    @given(st.dictionaries(st.text(), JSON))
    def check(doc: dict[str, object]) -> None:
        value = msgspec.json.encode(doc)
        assert loop.run_until_complete(round_trip(value)) == value

    try:
        check()
    finally:
        loop.close()


async def test_no_temporary_or_lock_files_are_left_behind(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    etags = await storage.write({"a": WriteItem(b"{}"), "b": WriteItem(b"{}")})
    with pytest.raises(PreconditionFailedError):
        await storage.write({"a": WriteItem(b"{}", if_match=None), "c": WriteItem(b"{}", if_match="stale")})
    with pytest.raises(PreconditionFailedError):
        await storage.write({"b": WriteItem(b"{}", if_match="stale")})
    await storage.write({"b": WriteItem(b"{}", if_match=etags["b"])})
    assert files_in(tmp_path) == {"a", "b"}
    assert files_in(tmp_path / ".locks") <= {"a", "b"}
    await storage.delete(["a", "b", "never"])
    assert files_in(tmp_path) == set()
    assert files_in(tmp_path / ".locks") == set()


# -- corrupt and foreign files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"format":1,"key":"k","etag":"e","expires_at":null,"value":{"a":',
        b'{"some":"other tool\'s json"}',
        b'{"format":2,"key":"k","etag":"e","expires_at":null,"value":{}}',
        b'{"format":1,"key":"k","etag":"e","expires_at":null,"value":[1]}',
        b'{"format":1,"key":"other","etag":"e","expires_at":null,"value":{}}',
        b'{"format":1,"key":"k","etag":"e","expires_at":null,"value":'
        + b"[" * 200_000
        + b"]" * 200_000
        + b"}",
    ],
    ids=["empty", "torn", "foreign", "future-format", "not-an-object", "other-key", "deeply-nested"],
)
async def test_corrupt_file_raises_and_is_left_untouched(tmp_path: Path, content: bytes) -> None:
    storage = FileStorage(tmp_path)
    await storage.write({"neighbour": WriteItem(b'{"n":1}')})
    path = Path(storage.path_for("k"))
    path.write_bytes(content)
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.read(["k", "neighbour"]),
        lambda: storage.write({"k": WriteItem(b"{}")}),
        lambda: storage.write({"k": WriteItem(b"{}", if_match=None)}),
    ]
    for attempt in attempts:
        with pytest.raises(CorruptDocumentError) as info:
            await attempt()
        assert info.value.key == "k"
        assert str(path) in str(info.value)
    # Listing and purging skip it, each logging it once and counting it.
    assert await storage.purge_expired() == 0
    assert [k async for k in storage.list_keys()] == ["neighbour"]
    assert storage.unreadable_skipped == 2
    assert path.read_bytes() == content
    assert (await storage.read(["neighbour"]))["neighbour"].value == b'{"n":1}'
    await storage.delete(["k"])
    await storage.write({"k": WriteItem(b"{}", if_match=None)})
    assert (await storage.read(["k"]))["k"].value == b"{}"


async def test_file_copied_to_another_keys_name_is_not_served(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    await storage.write({"user/alice": WriteItem(b'{"secret":1}')})
    shutil.copy(storage.path_for("user/alice"), storage.path_for("user/bob"))
    with pytest.raises(CorruptDocumentError, match="another key"):
        await storage.read(["user/bob"])


async def test_hashed_file_holding_another_key_is_never_served_but_can_be_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The name matches, the key inside does not: never served or overwritten, skipped by listing."""
    storage = FileStorage(tmp_path)
    alice, bob = "user/alice/" + "x" * 300, "user/bob/" + "x" * 300
    assert encode_key(alice).startswith("@")
    await storage.write({alice: WriteItem(b'{"secret":1}')})
    os.replace(storage.path_for(alice), storage.path_for(bob))
    for attempt in (storage.read([bob]), storage.write({bob: WriteItem(b"{}")})):
        with pytest.raises(CorruptDocumentError, match="another key"):
            await attempt
    assert [k async for k in storage.list_keys()] == []
    assert storage.unreadable_skipped == 1
    assert "another key's name" in caplog.text and storage.path_for(bob) in caplog.text
    assert json.loads(Path(storage.path_for(bob)).read_bytes())["key"] == alice
    # Deleting the key removes the file at its name, whatever it holds: how a key is repaired.
    await storage.delete([bob])
    assert not os.path.lexists(storage.path_for(bob))
    await storage.write({bob: WriteItem(b"{}", if_match=None)})


async def test_directory_in_place_of_a_document(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    os.mkdir(storage.path_for("k"))
    with pytest.raises(CorruptDocumentError):
        await storage.read(["k"])
    with pytest.raises(CorruptDocumentError):
        await storage.delete(["k"])


async def test_foreign_file_names_are_not_listed(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    await storage.write({"a": WriteItem(b"{}")})
    (tmp_path / "README.md").write_text("not a key's file")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    assert [k async for k in storage.list_keys()] == ["a"]


# -- expiry and purge ----------------------------------------------------------------------------------


async def test_purge_removes_expired_documents_and_stale_temporary_files(tmp_path: Path) -> None:
    clock = ManualClock()
    storage = FileStorage(tmp_path, clock=clock)
    long_key = "expiring/" + "x" * 300
    await storage.write(
        {
            "expiring": WriteItem(b"{}", ttl=10),
            long_key: WriteItem(b"{}", ttl=10),
            "later": WriteItem(b"{}", ttl=100),
            "forever": WriteItem(b"{}"),
        }
    )
    stale, fresh = tmp_path / ".tmp-stale", tmp_path / ".tmp-fresh"
    stale.write_bytes(b'{"format":1')
    fresh.write_bytes(b'{"format":1')
    old = time.time() - 120
    os.utime(stale, (old, old))
    (tmp_path / ".locks" / "orphan").write_bytes(b"")
    clock.now += 50
    assert await storage.purge_expired() == 3
    assert files_in(tmp_path) == {"later", "forever", ".tmp-fresh"}
    assert files_in(tmp_path / ".locks") <= {"later", "forever"}
    assert await storage.purge_expired() == 0
    clock.now += 100
    assert await storage.purge_expired() == 1
    assert [k async for k in storage.list_keys()] == ["forever"]


async def test_purge_keeps_a_document_rewritten_since_it_expired(tmp_path: Path) -> None:
    clock = ManualClock()
    storage = FileStorage(tmp_path, clock=clock)
    await storage.write({"k": WriteItem(b'{"n":1}', ttl=1)})
    clock.now += 5
    await storage.write({"k": WriteItem(b'{"n":2}', if_match=None)})
    assert await storage.purge_expired() == 0
    assert (await storage.read(["k"]))["k"].value == b'{"n":2}'


# -- locking -------------------------------------------------------------------------------------------


def test_flock_on_separate_descriptors_conflicts_within_one_process(tmp_path: Path) -> None:
    """FileStorage relies on this (Linux flock semantics) instead of a second in-process lock."""
    path = tmp_path / "lock"
    first = os.open(path, os.O_RDWR | os.O_CREAT)
    second = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(first)
        os.close(second)


async def test_two_instances_in_one_process_have_one_winner_per_round(tmp_path: Path) -> None:
    storages = [FileStorage(tmp_path) for _ in range(4)]
    etag = (await storages[0].write({"k": WriteItem(b'{"n":0}')}))["k"]
    for round_no in range(5):

        async def attempt(i: int, expected: str) -> str | None:
            try:
                return (await storages[i % 4].write({"k": WriteItem(b'{"n":%d}' % i, if_match=expected)}))[
                    "k"
                ]
            except PreconditionFailedError:
                return None

        results = await asyncio.gather(*(attempt(i, etag) for i in range(12)))
        winners = [e for e in results if e is not None]
        assert len(winners) == 1, f"round {round_no}"
        etag = winners[0]
    assert len(THREAD_LOCKS) == 0  # the in-process lock table does not grow


async def test_held_lock_times_out_with_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, lock_timeout=0.2)
    fd = os.open(tmp_path / ".locks" / encode_key("busy"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StorageUnavailableError, match="timed out"):
            await storage.write({"free": WriteItem(b"{}"), "busy": WriteItem(b"{}")})
    finally:
        os.close(fd)
    assert files_in(tmp_path) == set()
    await storage.write({"free": WriteItem(b"{}"), "busy": WriteItem(b"{}")})
    assert files_in(tmp_path) == {"free", "busy"}


# -- operating-system errors ---------------------------------------------------------------------------


def run_child(directory: Path, mode: str) -> list[dict[str, object]]:
    script = Path(__file__).parents[1] / "support" / "file_oserrors.py"
    done = subprocess.run(
        [sys.executable, str(script), str(directory), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_file_too_large_maps_to_storage_unavailable_and_keeps_the_old_document(tmp_path: Path) -> None:
    await FileStorage(tmp_path).write({"small": WriteItem(b'{"n":0}')})
    results = run_child(tmp_path, "too-big")
    assert [r["error"] for r in results] == ["StorageUnavailableError", "StorageUnavailableError", None]
    assert all("EFBIG" in str(r["message"]) and r["cause"] == "OSError" for r in results[:2])
    assert results[2]["result"] == {"small": '{"n":0}'}
    assert files_in(tmp_path) == {"small"}


async def test_permission_denied_maps_to_storage_unavailable(tmp_path: Path) -> None:
    await FileStorage(tmp_path).write({"small": WriteItem(b'{"n":0}')})
    if os.geteuid() != 0:  # as root the child drops to "nobody" instead
        os.chmod(tmp_path, 0o500)
        os.chmod(tmp_path / "small", 0o000)
    try:
        results = run_child(tmp_path, "no-permission")
    finally:
        os.chmod(tmp_path, 0o700)
        os.chmod(tmp_path / "small", 0o600)
    assert [(r["op"], r["error"], r["cause"]) for r in results] == [
        ("write", "StorageUnavailableError", "PermissionError"),
        ("read", "StorageUnavailableError", "PermissionError"),
    ]
    assert "'small'" in str(results[1]["message"]) and "EACCES" in str(results[1]["message"])
    assert files_in(tmp_path) == {"small"}


async def test_directory_removed_under_a_running_storage(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "state")
    shutil.rmtree(tmp_path / "state")
    with pytest.raises(StorageUnavailableError, match="ENOENT"):
        await storage.write({"k": WriteItem(b"{}")})
    assert await storage.read(["k"]) == {}


def test_path_that_is_a_file_is_refused_at_construction(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(StorageUnavailableError, match="state"):
        FileStorage(tmp_path / "state")


@pytest.mark.parametrize("kwargs", [{"lock_timeout": 0}, {"stale_temp_after": -1}])
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FileStorage(tmp_path, **kwargs)  # type: ignore[arg-type]
