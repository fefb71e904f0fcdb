"""The turn engine: one read, one write of changed scopes only, commit on success, checkpoints, TTL."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from tests.support.activities import message, use_every_scope
from tests.support.counting import CountingStorage
from turnstate import (
    Activity,
    CorruptDocumentError,
    MemoryStorage,
    Scope,
    StateError,
    StateManager,
    StateMiddleware,
    TurnClosedError,
    WriteItem,
    document,
)
from turnstate.runtime import Bot, TurnContext
from turnstate.testing.clock import ManualClock


def incident_scope() -> Scope:
    return Scope("incident", key=lambda a: (a.value or {}).get("incident"))


@pytest.mark.parametrize("custom", [0, 1, 2])
async def test_one_read_per_turn_for_every_scope(custom: int) -> None:
    storage = CountingStorage()
    scopes = [Scope(f"s{i}", key=lambda a: "x") for i in range(custom)]
    manager = StateManager(storage, scopes=scopes)
    async with manager.turn(message()) as state:
        state.conversation.set("a", 1)
    assert len(storage.reads) == 1
    assert len(storage.reads[0]) == 3 + custom


async def test_one_write_with_only_changed_scopes() -> None:
    storage = CountingStorage()
    manager = StateManager(storage, scopes=[incident_scope()])
    async with manager.turn(message(value={"incident": "I-1"})) as state:
        state.conversation.set("a", 1)
        state.incident.set("b", 2)
        state.temp.set("c", 3)
    assert len(storage.writes) == 1
    assert sorted(k.split("/")[0] for k in storage.writes[0]) == ["conversation", "incident"]


async def test_read_only_turn_writes_nothing() -> None:
    storage = CountingStorage()
    manager = StateManager(storage)
    async with manager.turn(message()) as state:
        state.conversation.set("a", {"x": [1, 2]})
    storage.writes.clear()
    async with manager.turn(message()) as state:
        assert state.conversation.get("a") == {"x": [1, 2]}
        state.conversation.set("a", {"x": [1, 2]})  # same value: not a change
        state.user.get("nothing")
        state.temp.set("t", 1)
    assert storage.writes == []


async def test_emptying_an_absent_scope_writes_nothing() -> None:
    storage = CountingStorage()
    async with StateManager(storage).turn(message()) as state:
        state.user.set("a", 1)
        state.user.delete("a")
    assert storage.writes == []


async def test_exception_discards_every_change() -> None:
    storage = CountingStorage()
    manager = StateManager(storage)
    with pytest.raises(RuntimeError):
        async with manager.turn(message()) as state:
            state.conversation.set("a", 1)
            raise RuntimeError("handler failed")
    assert storage.writes == []
    assert manager.stats["discards"] == 1


@pytest.mark.parametrize("exc", [asyncio.CancelledError, KeyboardInterrupt, SystemExit])
async def test_base_exceptions_discard_too(exc: type[BaseException]) -> None:
    storage = CountingStorage()
    with pytest.raises(exc):
        async with StateManager(storage).turn(message()) as state:
            state.conversation.set("a", 1)
            raise exc()
    assert storage.writes == []


async def test_cancelled_task_commits_nothing() -> None:
    storage = CountingStorage()
    manager = StateManager(storage)
    started = asyncio.Event()

    async def turn() -> None:
        async with manager.turn(message()) as state:
            state.conversation.set("a", 1)
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(turn())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert storage.writes == []
    assert len(storage) == 0


async def test_bot_turn_cancelled_mid_handler_commits_nothing() -> None:
    bot = Bot()
    storage = CountingStorage()
    bot.use_state(storage)
    started = asyncio.Event()

    @bot.on("message")
    async def slow(ctx):  # type: ignore[no-untyped-def]
        ctx.state.conversation.set("count", 1)
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(bot.process(message()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert storage.writes == []


async def test_save_checkpoints_mid_turn_and_final_commit_still_works() -> None:
    storage = CountingStorage()
    manager = StateManager(storage)
    async with manager.turn(message()) as state:
        state.conversation.set("step", 1)
        await state.save()
        assert len(storage.writes) == 1
        await state.save()  # nothing new: no write
        assert len(storage.writes) == 1
        state.conversation.set("step", 2)
    assert len(storage.writes) == 2
    async with manager.turn(message()) as state:
        assert state.conversation.get("step") == 2
    assert manager.stats["conflicts"] == 0


async def test_checkpoint_survives_a_later_failure() -> None:
    manager = StateManager(MemoryStorage())
    with pytest.raises(RuntimeError):
        async with manager.turn(message()) as state:
            state.conversation.set("step", "ordered")
            await state.save()
            state.conversation.set("step", "paid")
            raise RuntimeError("payment service down")
    async with manager.turn(message()) as state:
        assert state.conversation.get("step") == "ordered"


async def test_commit_after_close_is_refused() -> None:
    turn = StateManager(MemoryStorage()).turn(message())
    async with turn as state:
        pass
    with pytest.raises(TurnClosedError):
        await state.save()


async def test_ttl_per_scope_is_applied_on_every_write_and_expired_state_reads_absent() -> None:
    clock = ManualClock()
    storage = CountingStorage(clock=clock)
    manager = StateManager(storage, ttl={"conversation": 7 * 86400, "user": None})
    async with manager.turn(message()) as state:
        state.conversation.set("flow", "intake")
        state.user.set("lang", "en")
    ttls = {k.split("/")[0]: item.ttl for k, item in storage.writes[-1].items()}
    assert ttls == {"conversation": 7 * 86400, "user": None}
    clock.now += 6 * 86400
    async with manager.turn(message()) as state:
        state.conversation.set("flow", "approval")  # a write slides the expiry
    clock.now += 6 * 86400
    async with manager.turn(message()) as state:
        assert state.conversation.get("flow") == "approval"
    clock.now += 8 * 86400
    async with manager.turn(message()) as state:
        assert state.conversation.get("flow") is None
        assert state.user.get("lang") == "en"


async def test_custom_scope_ttl() -> None:
    clock = ManualClock()
    storage = MemoryStorage(clock=clock)
    incident = Scope("incident", key=lambda a: "I-1", ttl=60)
    manager = StateManager(storage, scopes=[incident])
    async with manager.turn(message()) as state:
        state.incident.set("open", True)
    clock.now += 61
    async with manager.turn(message()) as state:
        assert state.incident.get("open") is None


async def test_stored_document_format() -> None:
    storage = MemoryStorage()
    async with StateManager(storage, dedupe=False).turn(message()) as state:
        state.conversation.set("count", 1)
    [key] = [k async for k in storage.list_keys()]
    raw = (await storage.read([key]))[key].value
    assert msgspec.json.decode(raw) == {"v": 1, "data": {"count": 1}}


async def test_corrupt_document_raises_naming_the_key_and_other_conversations_work() -> None:
    storage = MemoryStorage()
    manager = StateManager(storage)
    async with manager.turn(message()) as state:
        state.conversation.set("count", 1)
    [key] = [k async for k in storage.list_keys("conversation/")]
    for bad, why in (
        (b"not json", "not a turnstate document"),
        (b'{"v": 99, "data": {}}', "format version 99 is not supported"),
        (b'{"data": {}}', "not a turnstate document"),
        (b'{"v": 1, "data": [1]}', "'data' is not a JSON object"),
        (b'{"v": 2, "data": [1]}', "format version 2 is not supported"),
        # the redelivery window is written back verbatim, so escapes, non-ASCII and non-strings are refused
        (b'{"v": 1, "data": {}, "seen": "|0123456789ab00abc\\u0022"}', "'seen'"),
        (b'{"v": 1, "data": {}, "seen": "|0123456789ab00ab\xc3\xa9"}', "'seen'"),
        (b'{"v": 1, "data": {}, "seen": 12}', "'seen'"),
        (b'{"v": 1, "data": {}, "recent": "|0123456789ab00abc1\\u0022"}', "'recent'"),
        (b'{"v": 1, "data": {}, "recent": 12}', "'recent'"),
    ):
        await storage.write({key: WriteItem(bad)})
        with pytest.raises(CorruptDocumentError, match=why) as info:
            async with manager.turn(message()) as state:
                state.conversation.get("count")  # the scope raises when used
        assert repr(key) in str(info.value)
        assert (await storage.read([key]))[key].value == bad  # left untouched
    async with manager.turn(message(conversation="19:fine")) as state:
        state.conversation.set("count", 2)


async def test_key_function_failure_is_reported_with_the_scope() -> None:
    def broken(activity: object) -> str:
        raise LookupError("no incident field")

    manager = StateManager(MemoryStorage(), scopes=[Scope("incident", key=broken)])
    with pytest.raises(Exception, match="'incident'"):
        async with manager.turn(message()) as state:
            use_every_scope(state)  # an unreadable scope raises when used


async def test_key_functions_get_the_same_activity_from_a_dict_an_activity_and_the_bot() -> None:
    seen: list[object] = []

    def remember(activity: object) -> str:
        seen.append(activity)
        return "I-1"

    scopes = [Scope("incident", key=remember), Scope("team", key=remember)]
    raw = message(value={"incident": "I-1"}, channelData={"team": {"id": "T-1"}})
    manager = StateManager(MemoryStorage(), scopes=scopes)
    async with manager.turn(raw) as state:
        state.incident.set("owner", "ann")
    typed = Activity.from_dict(raw)
    async with manager.turn(typed) as state:
        assert state.incident.get("owner") == "ann"
    bot = Bot()
    bot.use_state(MemoryStorage(), scopes=scopes)

    @bot.on("message")
    async def handle(ctx: TurnContext) -> None:
        ctx.state.incident.set("owner", "bob")

    await bot.process(raw)
    assert [type(a) for a in seen] == [Activity] * 6
    # converted once per turn: every key function of a turn gets the same object
    assert seen[0] is seen[1] and seen[4] is seen[5] and seen[0] is not seen[4]
    assert seen[2] is typed and seen[3] is typed
    assert seen[0] == seen[4] == typed
    assert typed.value == {"incident": "I-1"}
    assert typed.channel_data == {"team": {"id": "T-1"}}


async def test_an_activity_dict_a_key_function_cannot_get_as_an_activity_names_the_scope() -> None:
    storage = MemoryStorage()
    manager = StateManager(storage, scopes=[incident_scope()])
    with pytest.raises(StateError, match=r"scope 'incident'.*not a valid Bot Framework activity.*\$\.text"):
        async with manager.turn(message(text=5)) as state:  # type: ignore[arg-type]
            state.conversation.set("lost", True)
    assert [key async for key in storage.list_keys("")] == []


async def test_manager_validates_options() -> None:
    with pytest.raises(TypeError, match="Storage"):
        StateManager({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_conflict"):
        StateManager(MemoryStorage(), on_conflict="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="builtin_scopes"):
        StateManager(MemoryStorage(), builtin_scopes=("conversation", "session"))


class ForeignContext:
    """A context object from some other runtime: it only exposes the activity."""

    def __init__(self, activity: dict[str, object]) -> None:
        self.activity = activity
        self.state = None


async def test_middleware_works_on_any_context_with_an_activity() -> None:
    storage = MemoryStorage()
    middleware = StateMiddleware(StateManager(storage))
    for expected in (1, 2):
        ctx = ForeignContext(message())

        async def handler(ctx: ForeignContext = ctx, expected: int = expected) -> None:
            assert ctx.state is not None
            assert ctx.state.conversation.incr("n") == expected

        await middleware(ctx, handler)


async def test_state_is_visible_to_middleware_registered_before_use_state() -> None:
    bot = Bot()
    seen: list[object] = []

    @bot.use
    async def early(ctx, next):  # type: ignore[no-untyped-def]
        seen.append(ctx.state.conversation.get("n"))
        ctx.state.temp.set("from_early", True)
        await next()

    bot.use_state(MemoryStorage())

    @bot.use()
    async def late(ctx, next):  # type: ignore[no-untyped-def]
        seen.append(ctx.state.temp.get("from_early"))
        await next()

    @bot.on("message")
    async def handler(ctx):  # type: ignore[no-untyped-def]
        ctx.state.conversation.incr("n")

    await bot.process(message())
    await bot.process(message())
    assert seen == [None, True, 1, True]


async def test_use_state_twice_is_refused() -> None:
    bot = Bot()
    bot.use_state(MemoryStorage())
    with pytest.raises(RuntimeError, match="already"):
        bot.use_state(MemoryStorage())


async def test_stats_count_turns_commits_and_writes() -> None:
    manager = StateManager(MemoryStorage())
    async with manager.turn(message()) as state:
        state.conversation.set("a", 1)
        state.user.set("b", 1)
    async with manager.turn(message()):
        pass
    assert (manager.stats["turns"], manager.stats["commits"], manager.stats["writes"]) == (2, 1, 2)


async def test_a_redelivery_is_found_in_whichever_document_recorded_it() -> None:
    manager = StateManager(MemoryStorage())

    async def turn(activity_id: str, *scopes: str) -> None:
        async with manager.turn(message(activity_id=activity_id)) as state:
            for scope in scopes:
                state.scope(scope).incr("n")

    async def is_duplicate(activity_id: str) -> bool:
        t = manager.turn(message(activity_id=activity_id))
        await t.load()
        t.discard()
        return t.duplicate

    for i in range(3):  # both documents written by the same turns: their windows are equal
        await turn(f"both-{i}", "conversation", "user")
    assert await is_duplicate("both-1") and not await is_duplicate("new-0")
    await turn("user-only", "user")
    await turn("conversation-only", "conversation")
    for activity_id in ("user-only", "conversation-only", "both-2"):
        assert await is_duplicate(activity_id), activity_id
    assert not await is_duplicate("new-1")
    await turn("both-late", "conversation", "user")  # windows that differ each keep their own records
    for activity_id in ("user-only", "conversation-only", "both-late"):
        assert await is_duplicate(activity_id), activity_id
    storage = manager.storage
    windows = [document.decode(k, (await storage.read([k]))[k].value).seen async for k in storage.list_keys()]
    assert len(windows) == 2 and windows[0] != windows[1]
