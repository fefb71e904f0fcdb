from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import pytest

from turnstate.document import decode, encode, encode_data
from turnstate.envelope import ENVELOPE_MARKER, is_envelope
from turnstate.errors import UnsupportedStorageError
from turnstate.field_encryption import FieldEncryption
from turnstate.keyring import KeyRing
from turnstate.reencrypt import ReencryptProgress, default_scope_of, reencrypt
from turnstate.storage.base import Capabilities, WriteItem
from turnstate.storage.memory import MemoryStorage
from turnstate.testing.clock import ManualClock

KEY1 = bytes(range(32))
KEY2 = bytes(range(50, 82))
PATHS = ["user.email", "conversation.incident.reporter.*"]
SECRET = "alice@example.com"


def no_ttl(key: str) -> float | None:
    return None


def user_doc(i: int) -> dict[str, Any]:
    return {"email": f"user{i}@example.com", "name": f"User {i}"}


def conversation_doc(i: int) -> dict[str, Any]:
    return {"incident": {"reporter": {"name": f"R{i}", "phone": str(i)}, "status": "open"}, "turns": i}


async def put(storage: MemoryStorage, enc: FieldEncryption, key: str, data: dict[str, Any]) -> None:
    scope = default_scope_of(key)
    stored = enc.encrypt_data(scope, key, data) if scope in enc.scopes else data
    await storage.write({key: WriteItem(encode(encode_data(stored), {"seen": ["a1"]}))})


async def load(storage: MemoryStorage, enc: FieldEncryption, key: str) -> dict[str, Any]:
    item = (await storage.read([key]))[key]
    return enc.decrypt_data(default_scope_of(key), key, decode(key, item.value).data)


def key_ids(data: Any) -> set[str]:
    """Key ids of every envelope anywhere in ``data``."""
    if is_envelope(data):
        return {data[ENVELOPE_MARKER].split(".")[1]}
    if isinstance(data, dict):
        return set().union(*(key_ids(v) for v in data.values()))
    return set()


async def stored_key_ids(storage: MemoryStorage) -> dict[str, set[str]]:
    keys = [key async for key in storage.list_keys()]
    items = await storage.read(keys)
    return {key: key_ids(decode(key, item.value).data) for key, item in items.items()}


@pytest.fixture
def old() -> FieldEncryption:
    return FieldEncryption(PATHS, KeyRing({"k1": KEY1}))


@pytest.fixture
def new(old: FieldEncryption) -> FieldEncryption:
    return old.with_keys(old.keys.with_key("k2", KEY2, primary=True))


@pytest.fixture
async def storage(old: FieldEncryption) -> MemoryStorage:
    storage = MemoryStorage()
    for i in range(12):
        await put(storage, old, f"user/u{i:02}", user_doc(i))
        await put(storage, old, f"conversation/c{i:02}", conversation_doc(i))
    await put(storage, old, "private/p1", {"notes": "not encrypted"})
    return storage


async def test_rotation_leaves_no_document_under_the_old_key(
    storage: MemoryStorage, old: FieldEncryption, new: FieldEncryption
) -> None:
    for i in range(12):  # readable with both keys in the ring before re-encryption
        assert await load(storage, new, f"user/u{i:02}") == user_doc(i)
    report = await reencrypt(storage, new, ttl_of=no_ttl)
    assert (report.scanned, report.rewritten, report.already_current, report.skipped, report.failed) == (
        25,
        24,
        0,
        1,
        0,
    )
    assert report.last_key == "user/u11"
    ids = await stored_key_ids(storage)
    assert all(found == {"k2"} for key, found in ids.items() if key != "private/p1")
    # Readable with the old key dropped; meta preserved.
    only_new = new.with_keys(new.keys.without_key("k1"))
    for i in range(12):
        assert await load(storage, only_new, f"user/u{i:02}") == user_doc(i)
        assert await load(storage, only_new, f"conversation/c{i:02}") == conversation_doc(i)
    item = (await storage.read(["user/u03"]))["user/u03"]
    assert msgspec.json.decode(msgspec.json.encode(decode("user/u03", item.value).meta)) == {"seen": ["a1"]}
    # A second run finds nothing to do.
    again = await reencrypt(storage, new, ttl_of=no_ttl)
    assert (again.rewritten, again.already_current, again.skipped) == (0, 24, 1)


class Interrupted(Exception):
    pass


async def test_interrupted_run_resumes_after_the_last_key(
    storage: MemoryStorage, new: FieldEncryption
) -> None:
    seen: list[ReencryptProgress] = []

    def stop_after_five(p: ReencryptProgress) -> None:
        seen.append(p)
        if p.done == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        await reencrypt(storage, new, ttl_of=no_ttl, progress=stop_after_five)
    assert [p.done for p in seen] == [1, 2, 3, 4, 5]
    assert all(p.total == 25 for p in seen)
    assert [p.last_key for p in seen] == sorted(p.last_key for p in seen)
    done = {p.last_key for p in seen}
    ids = await stored_key_ids(storage)
    assert all(ids[key] == {"k2"} for key in done)
    assert sum(found == {"k1"} for found in ids.values()) == 24 - 5

    report = await reencrypt(storage, new, ttl_of=no_ttl, resume_after=seen[-1].last_key)
    assert report.scanned == 20 and report.rewritten == 19 and report.failed == 0
    ids = await stored_key_ids(storage)
    assert not any("k1" in found for found in ids.values())


async def test_async_progress_is_awaited_and_prefix_limits_the_run(
    storage: MemoryStorage, new: FieldEncryption
) -> None:
    calls: list[str] = []

    async def progress(p: ReencryptProgress) -> None:
        calls.append(p.last_key)

    report = await reencrypt(storage, new, ttl_of=no_ttl, prefix="user/", progress=progress)
    assert report.rewritten == 12 and calls == [f"user/u{i:02}" for i in range(12)]
    ids = await stored_key_ids(storage)
    assert all(found == {"k1"} for key, found in ids.items() if key.startswith("conversation/"))


async def test_plaintext_is_migrated_when_allowed_and_reported_otherwise(new: FieldEncryption) -> None:
    storage = MemoryStorage()
    for i in range(3):
        await storage.write({f"user/u{i}": WriteItem(encode(encode_data(user_doc(i))))})
    strict = await reencrypt(storage, new, ttl_of=no_ttl)
    assert strict.failed == 3 and strict.rewritten == 0
    assert all("stored as plaintext" in message for message in strict.failures.values())
    assert all(f"user{i}@example.com" not in m for i in range(3) for m in strict.failures.values())

    migrating = FieldEncryption(PATHS, new.keys, allow_plaintext=True)
    report = await reencrypt(storage, migrating, ttl_of=no_ttl)
    assert report.rewritten == 3 and report.failed == 0
    for i in range(3):
        assert await load(storage, new, f"user/u{i}") == user_doc(i)


async def test_a_damaged_document_is_reported_and_the_run_goes_on(
    storage: MemoryStorage, new: FieldEncryption
) -> None:
    items = await storage.read(["user/u04", "user/u05"])
    data = decode("user/u04", items["user/u04"].value).data
    data["email"] = decode("user/u05", items["user/u05"].value).data["email"]  # moved from another user
    await storage.write({"user/u04": WriteItem(encode(encode_data(data)))})
    await storage.write({"user/u06": WriteItem(b"not json")})
    report = await reencrypt(storage, new, ttl_of=no_ttl)
    assert report.failed == 2 and set(report.failures) == {"user/u04", "user/u06"}
    assert "authentication failed" in report.failures["user/u04"]
    assert "user4@example.com" not in report.failures["user/u04"]
    assert "user5@example.com" not in report.failures["user/u04"]
    assert "unreadable" in report.failures["user/u06"]
    assert report.rewritten == 22


class LiveBotStorage(MemoryStorage):
    """A MemoryStorage on which another writer commits to ``contested`` just before our next writes."""

    def __init__(self, contested: str, times: int, enc: FieldEncryption) -> None:
        super().__init__()
        self.contested = contested
        self.times = times
        self.enc = enc
        self.bot_writes = 0

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if self.contested in items and self.bot_writes < self.times and items[self.contested].if_match != "*":
            self.bot_writes += 1
            data = user_doc(99) | {"email": f"changed{self.bot_writes}@example.com"}
            stored = self.enc.encrypt_data("user", self.contested, data)
            await super().write({self.contested: WriteItem(encode(encode_data(stored)))})
        return await super().write(items)


async def test_concurrent_writer_is_retried_and_its_change_kept(
    old: FieldEncryption, new: FieldEncryption
) -> None:
    storage = LiveBotStorage("user/u1", times=2, enc=old)
    for i in range(3):
        await put(storage, old, f"user/u{i}", user_doc(i))
    report = await reencrypt(storage, new, ttl_of=no_ttl)
    assert storage.bot_writes == 2
    assert report.rewritten == 3 and report.failed == 0
    assert await load(storage, new.with_keys(new.keys.without_key("k1")), "user/u1") == user_doc(99) | {
        "email": "changed2@example.com"
    }


async def test_endless_conflicts_are_reported_as_failed(old: FieldEncryption, new: FieldEncryption) -> None:
    storage = LiveBotStorage("user/u1", times=100, enc=old)
    for i in range(3):
        await put(storage, old, f"user/u{i}", user_doc(i))
    report = await reencrypt(storage, new, ttl_of=no_ttl, max_attempts=3)
    assert storage.bot_writes == 3
    assert report.failed == 1 and "after 3 attempts" in report.failures["user/u1"]
    assert report.rewritten == 2


async def test_vanished_documents_are_skipped(old: FieldEncryption, new: FieldEncryption) -> None:
    clock = ManualClock()
    storage = MemoryStorage(clock=clock)
    for i in range(12):
        await put(storage, old, f"user/u{i:02}", user_doc(i))
        await put(storage, old, f"conversation/c{i:02}", conversation_doc(i))
    await put(storage, old, "private/p1", {"notes": "not encrypted"})
    item = (await storage.read(["conversation/c01"]))["conversation/c01"]
    await storage.write({"conversation/c01": WriteItem(item.value, item.etag, ttl=10)})

    def expire_next(p: ReencryptProgress) -> None:
        if p.last_key == "conversation/c00":
            clock.advance(60)  # the next document expires while the run is under way

    report = await reencrypt(storage, new, ttl_of=no_ttl, progress=expire_next, batch_size=1, clock=clock)
    assert report.skipped == 2 and report.rewritten == 23


async def test_rewritten_documents_get_the_ttl_asked_for(old: FieldEncryption, new: FieldEncryption) -> None:
    clock = ManualClock()
    storage = MemoryStorage(clock=clock)
    await put(storage, old, "user/u1", user_doc(1))
    await put(storage, old, "conversation/c1", conversation_doc(1))
    report = await reencrypt(storage, new, ttl_of=lambda key: 60.0 if key.startswith("user/") else None)
    assert report.rewritten == 2
    clock.now += 61
    assert set(await storage.read(["user/u1", "conversation/c1"])) == {"conversation/c1"}


async def test_rewritten_documents_keep_their_remaining_lifetime_unless_told(
    old: FieldEncryption, new: FieldEncryption
) -> None:
    clock = ManualClock()
    storage = MemoryStorage(clock=clock)
    scope_ttl = {"user": 100.0, "conversation": None}
    for key in ("user/u1", "user/u2", "conversation/c1"):
        scope = default_scope_of(key)
        data = old.encrypt_data(scope, key, user_doc(1) if scope == "user" else conversation_doc(1))
        await storage.write({key: WriteItem(encode(encode_data(data)), ttl=scope_ttl[scope])})
    written = {key: item.expires_at for key, item in (await storage.read(["user/u1", "user/u2"])).items()}
    clock.now += 40
    report = await reencrypt(
        storage, new, ttl_of=lambda key: 500.0 if key == "user/u2" else None, clock=clock
    )
    assert report.rewritten == 3
    found = await storage.read(["user/u1", "user/u2", "conversation/c1"])
    assert all(key_ids(decode(key, item.value).data) == {"k2"} for key, item in found.items())
    assert found["user/u1"].expires_at == pytest.approx(written["user/u1"])
    assert found["user/u2"].expires_at == pytest.approx(clock.now + 500)
    assert found["conversation/c1"].expires_at is None
    clock.now += 61  # past user/u1's original expiry
    assert set(await storage.read(["user/u1", "user/u2", "conversation/c1"])) == {
        "user/u2",
        "conversation/c1",
    }


async def test_document_found_expired_is_skipped_and_left_as_it_is(
    old: FieldEncryption, new: FieldEncryption
) -> None:
    """Measured on reencrypt's clock, a document whose expiry has passed is not brought back to life."""
    storage_clock, late = ManualClock(), ManualClock()
    storage = MemoryStorage(clock=storage_clock)
    await put(storage, old, "user/u1", user_doc(1))
    await storage.write(
        {"user/u2": WriteItem(encode(encode_data(old.encrypt_data("user", "user/u2", user_doc(2)))), ttl=10)}
    )
    before = await storage.read(["user/u2"])
    late.now = storage_clock.now + 11
    report = await reencrypt(storage, new, clock=late)
    assert (report.rewritten, report.skipped, report.failed) == (1, 1, 0)
    assert await storage.read(["user/u2"]) == before


async def test_custom_scope_of(old: FieldEncryption, new: FieldEncryption) -> None:
    storage = MemoryStorage()
    enc_old = FieldEncryption(["incident.secret"], old.keys)
    await storage.write(
        {
            "tenant-a:incident:1": WriteItem(
                encode(
                    encode_data(enc_old.encrypt_data("incident", "tenant-a:incident:1", {"secret": SECRET}))
                )
            )
        }
    )
    enc_new = enc_old.with_keys(new.keys)
    report = await reencrypt(storage, enc_new, ttl_of=no_ttl, scope_of=lambda key: key.split(":")[1])
    assert report.rewritten == 1
    assert key_ids(
        decode("k", (await storage.read(["tenant-a:incident:1"]))["tenant-a:incident:1"].value).data
    ) == {"k2"}


class NoListing(MemoryStorage):
    capabilities: ClassVar[Capabilities] = Capabilities(atomic_batch=True)


async def test_storage_without_list_keys_is_refused(new: FieldEncryption) -> None:
    with pytest.raises(UnsupportedStorageError, match="'list_keys' capability, and NoListing") as info:
        await reencrypt(NoListing(), new, ttl_of=no_ttl)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(("option", "value"), [("max_attempts", 0), ("batch_size", 0)])
async def test_bad_options_are_refused(new: FieldEncryption, option: str, value: int) -> None:
    with pytest.raises(ValueError, match=option):
        await reencrypt(MemoryStorage(), new, ttl_of=no_ttl, **{option: value})
