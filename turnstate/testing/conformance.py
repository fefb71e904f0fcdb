"""The storage conformance suite: every rule of ``turnstate.storage.base``, as pytest tests.

Subclass :class:`StorageConformance` and provide a ``storage`` fixture, declared with
``@pytest_asyncio.fixture`` when it is async so the suite runs in pytest-asyncio's strict mode (which
refuses a plain ``@pytest.fixture`` async fixture) as in auto mode. Every test uses fresh random keys, so
the suite can run against a shared live server.

Expiry is tested on an injectable clock: give the storage a :class:`~turnstate.testing.ManualClock` that a
``clock`` fixture also returns (in the class, module or a conftest), and the suite checks reported
expiries against it and moves it forward instead of sleeping; without a ``clock`` fixture it uses
``time.time`` and real sleeps. Hooks to override:

* ``storage_clock`` fixture: the clock (Unix seconds) the expiry a storage reports
  (``StoredItem.expires_at``) is checked against. Default: the ``clock`` fixture, else ``time.time``.
* ``advance`` fixture: an async callable that lets N seconds pass for the storage. Default: moves a
  ManualClock ``storage_clock`` forward, else sleeps.
* ``ttl_seconds``: the TTL used by expiry tests (default 0.5 s; raise it for a backend with coarser TTL).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

import pytest

from turnstate.errors import InvalidItemError, InvalidKeyError, PreconditionFailedError
from turnstate.storage.base import ANY_ETAG, Storage, StoredItem, WriteItem
from turnstate.testing.clock import ManualClock

Advance = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

EXPIRY_TOLERANCE = 2.0
"""Seconds an expiry a storage reports may differ from the clock's now + ttl (rounding, clock reads)."""

TRICKY_KEYS = [
    "plain",
    "with/slash/and/more",
    "../../escape",
    "..",
    ".",
    "/leading",
    "trailing/",
    "spaces and\ttabs",
    "\t2",
    "\\",
    "*92",
    "question?hash#",
    "percent%2Fencoded",
    "CaseSensitive",
    "casesensitive",
    "nul\x00byte",
    "unicode-ünïcødé-日本語-🙂",
    "colon:19:abc@thread.v2",
    "x" * 1000,
]


def _doc(n: int | str) -> bytes:
    return b'{"n":' + str(n).encode() + b"}" if isinstance(n, int) else b'{"s":"' + n.encode() + b'"}'


class StorageConformance:
    """Contract tests for a :class:`~turnstate.storage.base.Storage`. Subclass and provide ``storage``."""

    ttl_seconds: float = 0.5

    @pytest.fixture
    def storage(self) -> Storage:
        raise NotImplementedError("provide a 'storage' fixture that yields the storage under test")

    @pytest.fixture
    def storage_clock(self, request: pytest.FixtureRequest) -> Clock:
        try:
            return cast(Clock, request.getfixturevalue("clock"))
        except pytest.FixtureLookupError:
            return time.time

    @pytest.fixture
    def advance(self, storage_clock: Clock) -> Advance:
        return storage_clock.sleep if isinstance(storage_clock, ManualClock) else asyncio.sleep

    @staticmethod
    def new_key(name: str = "k") -> str:
        return f"conformance/{uuid.uuid4().hex}/{name}"

    # -- edge-case contracts ------------------------------------------------------------------------------

    async def test_read_of_no_keys_returns_empty(self, storage: Storage) -> None:
        """read([]) returns {}."""
        assert await storage.read([]) == {}

    async def test_write_of_nothing_is_a_no_op(self, storage: Storage) -> None:
        """write({}) returns {} and writes nothing."""
        assert await storage.write({}) == {}

    async def test_unknown_keys_are_omitted(self, storage: Storage) -> None:
        """Keys that were never written are absent from read's result."""
        known = self.new_key("known")
        await storage.write({known: WriteItem(_doc(1))})
        result = await storage.read([known, self.new_key("unknown")])
        assert list(result) == [known]

    async def test_delete_of_unknown_key_is_fine(self, storage: Storage) -> None:
        """Deleting keys that do not exist succeeds."""
        await storage.delete([self.new_key("never-written")])
        await storage.delete([])

    @pytest.mark.parametrize("op", ["read", "write", "delete"])
    async def test_empty_key_is_rejected(self, storage: Storage, op: str) -> None:
        """The empty string is never a key: InvalidKeyError, which is also a ValueError."""
        with pytest.raises(InvalidKeyError):
            if op == "read":
                await storage.read([""])
            elif op == "write":
                await storage.write({"": WriteItem(_doc(1))})
            else:
                await storage.delete([""])

    @pytest.mark.parametrize("op", ["read", "write", "delete"])
    async def test_key_that_is_not_valid_unicode_is_rejected(self, storage: Storage, op: str) -> None:
        """A key with a lone surrogate has no UTF-8 form: InvalidKeyError naming it, before anything else."""
        good, bad = self.new_key("good"), self.new_key("lone-\ud800-surrogate")
        if op == "delete":
            await storage.write({good: WriteItem(_doc(1))})
        with pytest.raises(InvalidKeyError) as info:
            if op == "read":
                await storage.read([good, bad])
            elif op == "write":
                await storage.write({good: WriteItem(_doc(2)), bad: WriteItem(_doc(2))})
            else:
                await storage.delete([good, bad])
        assert info.value.key == bad
        found = await storage.read([good])
        assert [item.value for item in found.values()] == ([_doc(1)] if op == "delete" else [])

    async def test_non_positive_ttl_is_rejected_and_writes_nothing(self, storage: Storage) -> None:
        """A TTL <= 0 is refused before anything in the batch is written."""
        good, bad = self.new_key("good"), self.new_key("bad")
        with pytest.raises(InvalidItemError):
            await storage.write({good: WriteItem(_doc(1)), bad: WriteItem(_doc(2), ttl=0)})
        assert await storage.read([good, bad]) == {}

    # -- CRUD ---------------------------------------------------------------------------------------------

    async def test_write_then_read_returns_the_same_bytes_and_etag(self, storage: Storage) -> None:
        """read returns exactly the bytes written, with the ETag write returned."""
        key = self.new_key()
        value = b'{"a":1,"nested":{"list":[1,2,3],"s":"\\u00fc"}}'
        etags = await storage.write({key: WriteItem(value)})
        item = (await storage.read([key]))[key]
        assert item.value == value
        assert item.etag == etags[key]

    async def test_batch_write_and_read(self, storage: Storage) -> None:
        """One write call stores several keys; one read call returns them all."""
        keys = [self.new_key(f"k{i}") for i in range(5)]
        etags = await storage.write({k: WriteItem(_doc(i)) for i, k in enumerate(keys)})
        assert set(etags) == set(keys)
        found = await storage.read(keys)
        assert {k: v.value for k, v in found.items()} == {k: _doc(i) for i, k in enumerate(keys)}

    async def test_overwrite_replaces_value(self, storage: Storage) -> None:
        """An unconditional write replaces what was stored."""
        key = self.new_key()
        await storage.write({key: WriteItem(_doc(1))})
        await storage.write({key: WriteItem(_doc(2), if_match=ANY_ETAG)})
        assert (await storage.read([key]))[key].value == _doc(2)

    async def test_delete_removes(self, storage: Storage) -> None:
        """A deleted key reads as absent and can be created again with create-only."""
        key, other = self.new_key(), self.new_key("other")
        await storage.write({key: WriteItem(_doc(1)), other: WriteItem(_doc(2))})
        await storage.delete([key])
        assert list(await storage.read([key, other])) == [other]
        await storage.write({key: WriteItem(_doc(3), if_match=None)})
        assert (await storage.read([key]))[key].value == _doc(3)

    async def test_large_value_round_trips(self, storage: Storage) -> None:
        """A 200 KB document comes back byte for byte."""
        key = self.new_key()
        value = b'{"blob":"' + b"x" * 200_000 + b'"}'
        await storage.write({key: WriteItem(value)})
        assert (await storage.read([key]))[key].value == value

    async def test_written_buffer_is_copied(self, storage: Storage) -> None:
        """Mutating the buffer after write does not change what is stored."""
        key = self.new_key()
        buf = bytearray(_doc(1))
        await storage.write({key: WriteItem(buf)})  # type: ignore[arg-type]
        buf[:] = _doc(9)
        assert (await storage.read([key]))[key].value == _doc(1)

    @pytest.mark.parametrize("suffix", TRICKY_KEYS, ids=lambda k: repr(k)[:24])
    async def test_tricky_keys_round_trip_without_collisions(self, storage: Storage, suffix: str) -> None:
        """Any non-empty key works and never shares an item with another key."""
        base = self.new_key("")
        key = base + suffix
        neighbours = [base + other for other in TRICKY_KEYS if other != suffix]
        await storage.write({key: WriteItem(_doc(suffix.encode().hex()))})
        found = await storage.read([key, *neighbours])
        assert list(found) == [key]
        assert found[key].value == _doc(suffix.encode().hex())

    @pytest.mark.parametrize(
        "ending", [" ", "\n", "\t", " \n"], ids=["space", "newline", "tab", "space-newline"]
    )
    async def test_key_ending_in_whitespace_is_kept_apart_from_the_bare_key(
        self, storage: Storage, ending: str
    ) -> None:
        """Trailing whitespace is part of the key: stored, listed and deleted apart from the bare key."""
        bare = self.new_key("incident 42")
        key = bare + ending
        etags = await storage.write({key: WriteItem(_doc(1)), bare: WriteItem(_doc(2))})
        found = await storage.read([key, bare])
        assert {k: (v.value, v.etag) for k, v in found.items()} == {
            key: (_doc(1), etags[key]),
            bare: (_doc(2), etags[bare]),
        }
        if storage.capabilities.list_keys:
            assert {k async for k in storage.list_keys(bare)} == {key, bare}
        await storage.delete([key])
        assert list(await storage.read([key, bare])) == [bare]

    # -- ETags and preconditions --------------------------------------------------------------------------

    async def test_etag_changes_on_every_write(self, storage: Storage) -> None:
        """Writing the same bytes again still yields a new ETag."""
        key = self.new_key()
        seen = set()
        for _ in range(3):
            seen.add((await storage.write({key: WriteItem(_doc(1))}))[key])
        assert len(seen) == 3

    async def test_matching_etag_writes(self, storage: Storage) -> None:
        """if_match with the current ETag succeeds and returns a new ETag."""
        key = self.new_key()
        first = (await storage.write({key: WriteItem(_doc(1))}))[key]
        second = (await storage.write({key: WriteItem(_doc(2), if_match=first)}))[key]
        assert second != first
        assert (await storage.read([key]))[key] == StoredItem(_doc(2), second)

    async def test_stale_etag_is_refused_and_changes_nothing(self, storage: Storage) -> None:
        """if_match with an old ETag raises PreconditionFailedError naming the key; the value stays."""
        key = self.new_key()
        old = (await storage.write({key: WriteItem(_doc(1))}))[key]
        current = (await storage.write({key: WriteItem(_doc(2), if_match=old)}))[key]
        with pytest.raises(PreconditionFailedError) as info:
            await storage.write({key: WriteItem(_doc(3), if_match=old)})
        assert info.value.keys == [key]
        assert key in str(info.value)
        item = (await storage.read([key]))[key]
        assert (item.value, item.etag) == (_doc(2), current)

    async def test_etag_on_absent_key_is_refused(self, storage: Storage) -> None:
        """if_match with an ETag fails when the key does not exist (it was deleted meanwhile)."""
        key = self.new_key()
        etag = (await storage.write({key: WriteItem(_doc(1))}))[key]
        await storage.delete([key])
        with pytest.raises(PreconditionFailedError):
            await storage.write({key: WriteItem(_doc(2), if_match=etag)})
        assert await storage.read([key]) == {}

    async def test_create_only(self, storage: Storage) -> None:
        """if_match=None writes only when the key does not exist."""
        key = self.new_key()
        await storage.write({key: WriteItem(_doc(1), if_match=None)})
        with pytest.raises(PreconditionFailedError) as info:
            await storage.write({key: WriteItem(_doc(2), if_match=None)})
        assert info.value.keys == [key]
        assert (await storage.read([key]))[key].value == _doc(1)

    async def test_star_is_unconditional(self, storage: Storage) -> None:
        """if_match='*' writes whether or not the key exists."""
        key = self.new_key()
        await storage.write({key: WriteItem(_doc(1), if_match="*")})
        await storage.write({key: WriteItem(_doc(2), if_match="*")})
        assert (await storage.read([key]))[key].value == _doc(2)

    async def test_failed_precondition_in_a_batch(self, storage: Storage) -> None:
        """Atomic backends write nothing of a failing batch; others write the rest and report their ETags."""
        ok, bad = self.new_key("ok"), self.new_key("bad")
        await storage.write({bad: WriteItem(_doc(1))})
        with pytest.raises(PreconditionFailedError) as info:
            await storage.write({ok: WriteItem(_doc(2)), bad: WriteItem(_doc(3), if_match=None)})
        assert info.value.keys == [bad]
        found = await storage.read([ok, bad])
        assert found[bad].value == _doc(1)
        if storage.capabilities.atomic_batch:
            assert ok not in found
            assert info.value.written == {}
        else:
            assert found[ok].value == _doc(2)
            assert info.value.written == {ok: found[ok].etag}

    async def test_concurrent_compare_and_set_has_one_winner_per_round(self, storage: Storage) -> None:
        """Many writers racing with the same ETag: exactly one wins each round."""
        key = self.new_key()
        etag = (await storage.write({key: WriteItem(_doc(0))}))[key]
        writers = 16
        for round_no in range(1, 6):

            async def attempt(i: int, expected: str, r: int = round_no) -> str | None:
                try:
                    new = await storage.write({key: WriteItem(_doc(r * 100 + i), if_match=expected)})
                except PreconditionFailedError:
                    return None
                return new[key]

            results = await asyncio.gather(*(attempt(i, etag) for i in range(writers)))
            winners = [(i, e) for i, e in enumerate(results) if e is not None]
            assert len(winners) == 1, f"round {round_no}: {len(winners)} winners"
            winner, etag = winners[0]
            item = (await storage.read([key]))[key]
            assert (item.value, item.etag) == (_doc(round_no * 100 + winner), etag)

    # -- expiry -------------------------------------------------------------------------------------------

    async def test_item_expires_after_ttl(self, storage: Storage, advance: Advance) -> None:
        """An item written with a TTL reads until the TTL passes, then reads as absent."""
        key, keeper = self.new_key("ttl"), self.new_key("keeper")
        await storage.write({key: WriteItem(_doc(1), ttl=self.ttl_seconds), keeper: WriteItem(_doc(2))})
        assert key in await storage.read([key])
        await advance(self.ttl_seconds * 2 + 0.2)
        assert list(await storage.read([key, keeper])) == [keeper]

    async def test_read_reports_when_an_item_expires(self, storage: Storage, storage_clock: Clock) -> None:
        """StoredItem.expires_at is the clock's now + ttl at the write (Unix seconds), or None without one."""
        key, forever = self.new_key("ttl"), self.new_key("forever")
        ttl = 600.0
        before = storage_clock()
        await storage.write({key: WriteItem(_doc(1), ttl=ttl), forever: WriteItem(_doc(2))})
        after = storage_clock()
        found = await storage.read([key, forever])
        assert found[forever].expires_at is None
        expires_at = found[key].expires_at
        assert expires_at is not None
        assert before + ttl - EXPIRY_TOLERANCE <= expires_at <= after + ttl + EXPIRY_TOLERANCE
        await storage.write({key: WriteItem(_doc(3))})
        assert (await storage.read([key]))[key].expires_at is None

    async def test_rewrite_resets_ttl(self, storage: Storage, advance: Advance) -> None:
        """Each write sets expiry afresh: a write without TTL makes the item permanent."""
        key = self.new_key()
        await storage.write({key: WriteItem(_doc(1), ttl=self.ttl_seconds)})
        await storage.write({key: WriteItem(_doc(2))})
        await advance(self.ttl_seconds * 2 + 0.2)
        assert (await storage.read([key]))[key].value == _doc(2)

    async def test_expired_item_counts_as_absent_for_preconditions(
        self, storage: Storage, advance: Advance
    ) -> None:
        """Create-only succeeds over an expired item; its old ETag no longer matches."""
        key = self.new_key()
        etag = (await storage.write({key: WriteItem(_doc(1), ttl=self.ttl_seconds)}))[key]
        await advance(self.ttl_seconds * 2 + 0.2)
        with pytest.raises(PreconditionFailedError):
            await storage.write({key: WriteItem(_doc(2), if_match=etag)})
        await storage.write({key: WriteItem(_doc(3), if_match=None)})
        assert (await storage.read([key]))[key].value == _doc(3)

    # -- listing and lifecycle ----------------------------------------------------------------------------

    async def test_list_keys_by_prefix(self, storage: Storage, advance: Advance) -> None:
        """list_keys yields live keys under a prefix (or NotImplementedError where not declared)."""
        prefix = self.new_key("")
        keys = {prefix + s for s in ("a", "b/c", "ünï", "x" * 300)}
        expiring, deleted = prefix + "expiring", prefix + "deleted"
        outside = self.new_key("outside")
        items = {k: WriteItem(_doc(1)) for k in [*keys, deleted, outside]}
        items[expiring] = WriteItem(_doc(1), ttl=self.ttl_seconds)
        await storage.write(items)
        await storage.delete([deleted])
        if not storage.capabilities.list_keys:
            with pytest.raises(NotImplementedError):
                async for _ in storage.list_keys(prefix):
                    pass
            return
        await advance(self.ttl_seconds * 2 + 0.2)
        assert {k async for k in storage.list_keys(prefix)} == keys

    async def test_aclose_is_idempotent(self, storage: Storage) -> None:
        """aclose can be called more than once (the fixture closes again afterwards)."""
        await storage.aclose()
        await storage.aclose()


# Every test of the suite is a coroutine: marked here, so it runs in pytest-asyncio's strict mode as in auto.
for _name, _test in list(vars(StorageConformance).items()):
    if _name.startswith("test_") and inspect.iscoroutinefunction(_test):
        setattr(StorageConformance, _name, pytest.mark.asyncio(_test))
