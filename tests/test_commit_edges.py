"""The less travelled paths of a commit: giving up, empty merges, deleted documents, encrypted merges,
and re-run mode on a storage without atomic batches."""

from __future__ import annotations

import asyncio

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import CommitRetriesExhaustedError, StateManager, WriteItem
from turnstate.document import decode
from turnstate.keyring import KeyRing
from turnstate.runtime import Bot, TurnContext


async def race(a: StateManager, b: StateManager, first: object, second: object) -> list[object]:
    """Both turns load the same versions, then both commit."""
    both_loaded = asyncio.Barrier(2)

    async def turn(manager: StateManager, change: object) -> None:
        async with manager.turn(message()) as state:
            await both_loaded.wait()
            change(state)  # type: ignore[operator]

    return await asyncio.gather(turn(a, first), turn(b, second), return_exceptions=True)


async def test_giving_up_after_the_last_attempt_raises_and_is_counted(backend: Backend) -> None:
    a = StateManager(backend.open(), max_commit_attempts=1)
    b = StateManager(backend.open(), max_commit_attempts=1)
    results = await race(a, b, lambda s: s.conversation.set("x", 1), lambda s: s.conversation.set("y", 2))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], CommitRetriesExhaustedError)
    assert errors[0].attempts == 1 and errors[0].keys[0].startswith("conversation/")
    assert a.stats["gave_up"] + b.stats["gave_up"] == 1
    async with StateManager(backend.open()).turn(message()) as state:
        assert len(state.conversation.keys()) == 1  # the winner's change only, nothing half-done


async def test_a_merge_that_leaves_nothing_to_write_writes_nothing(backend: Backend) -> None:
    a, b = StateManager(backend.open(), dedupe=False), StateManager(backend.open(), dedupe=False)
    results = await race(a, b, lambda s: s.conversation.set("x", 1), lambda s: s.conversation.set("x", 1))
    assert results == [None, None]
    assert a.stats["commits"] + b.stats["commits"] == 1  # the second found its change already stored
    assert a.stats["merges"] + b.stats["merges"] == 1


async def test_a_merge_that_leaves_the_fields_as_stored_still_records_the_activity(backend: Backend) -> None:
    a, b = StateManager(backend.open()), StateManager(backend.open())
    activities = [message(), message()]
    both_loaded = asyncio.Barrier(2)

    async def turn(manager: StateManager, activity: dict[str, object]) -> None:
        async with manager.turn(activity) as state:
            await both_loaded.wait()
            state.conversation.set("x", 1)

    await asyncio.gather(turn(a, activities[0]), turn(b, activities[1]))
    assert a.stats["commits"] + b.stats["commits"] == 2  # the second wrote only its window
    for activity in activities:  # so both are known as done, and neither runs again
        turn_ = StateManager(backend.open()).turn(activity)
        async with turn_ as state:
            assert turn_.duplicate and state.conversation.get("x") == 1


async def test_document_deleted_meanwhile_is_recreated_with_this_turns_fields(backend: Backend) -> None:
    manager = StateManager(backend.open())
    async with manager.turn(message()) as state:
        state.conversation.set("old", 1)
    storage = backend.open()
    async with manager.turn(message()) as state:
        [key] = [k async for k in storage.list_keys("conversation/")]
        await storage.delete([key])  # an operator deletes the document during the turn
        state.conversation.set("new", 2)
    async with manager.turn(message()) as state:
        assert state.conversation.to_dict() == {"new": 2}  # the deletion of "old" stands


async def test_encrypted_fields_merge_on_their_plaintext(backend: Backend) -> None:
    keys = KeyRing({"k1": bytes(range(32))})
    a = StateManager(backend.open(), encrypt=["user.email", "user.phone"], keys=keys)
    b = StateManager(backend.open(), encrypt=["user.email", "user.phone"], keys=keys)
    results = await race(
        a, b, lambda s: s.user.set("email", "ann@contoso.test"), lambda s: s.user.set("phone", "+1 555 0100")
    )
    assert results == [None, None]
    async with a.turn(message()) as state:
        assert state.user.to_dict() == {"email": "ann@contoso.test", "phone": "+1 555 0100"}


async def test_encrypted_fields_already_stored_merge_on_their_plaintext(backend: Backend) -> None:
    keys = KeyRing({"k1": bytes(range(32))})
    paths = ["user.email", "user.phone", "user.notes"]
    a = StateManager(backend.open(), encrypt=paths, keys=keys)
    b = StateManager(backend.open(), encrypt=paths, keys=keys)
    async with a.turn(message()) as state:
        state.user.set("email", "old@contoso.test")
        state.user.set("phone", "+1 555 0000")
        state.user.set("notes", "kept")
        state.user.set("visits", 1)
    results = await race(
        a,
        b,
        lambda s: s.user.set("email", "ann@contoso.test"),
        lambda s: (s.user.set("phone", "+1 555 0100"), s.user.incr("visits")),
    )
    assert results == [None, None]
    assert a.stats["merges"] + b.stats["merges"] == 1
    async with a.turn(message()) as state:
        assert state.user.to_dict() == {
            "email": "ann@contoso.test",
            "phone": "+1 555 0100",
            "notes": "kept",
            "visits": 2,
        }


async def test_a_checkpoint_of_new_encrypted_values_is_not_sealed_again_at_the_end(
    backend: Backend,
) -> None:
    manager = StateManager(backend.open(), encrypt=["user.email"], keys=KeyRing({"k1": bytes(32)}))
    storage = backend.open()
    async with manager.turn(message()) as state:
        state.user.set("email", "ann@contoso.test")
        await state.save()
        [key] = [k async for k in storage.list_keys("user/")]
        checkpointed = decode(key, (await storage.read([key]))[key].value).data["email"]
        state.user.set("email", "ann@contoso.test")  # same value: its envelope from save() is kept
    # the final commit rewrites the document only to mark the activity done in it
    assert manager.stats["writes"] == 2
    assert decode(key, (await storage.read([key]))[key].value).data["email"] == checkpointed
    async with manager.turn(message()) as state:
        assert state.user.get("email") == "ann@contoso.test"


async def test_rerun_mode_merges_instead_when_part_of_the_batch_was_written(backend: Backend) -> None:
    """A re-run must not apply a scope twice. An atomic storage wrote nothing of the losing batch, so the
    turn is re-run; a non-atomic one wrote the user scope before the conversation scope conflicted, so the
    conversation change is merged instead of re-running the turn."""
    atomic = backend.open().capabilities.atomic_batch
    runs: list[str] = []
    gate = asyncio.Event()

    bot = Bot()
    bot.use_state(backend.open(), rerun_on_conflict=True)

    @bot.on("message")
    async def handler(ctx: TurnContext) -> None:
        assert ctx.state is not None
        runs.append(str(ctx.activity.id))
        ctx.state.user.incr("messages")
        ctx.state.conversation.incr("turns")
        await gate.wait()

    task = asyncio.create_task(bot.process(message(activity_id="m-1")))
    while not runs:
        await asyncio.sleep(0.001)
    # another instance changes the conversation document meanwhile
    async with StateManager(backend.open()).turn(message(activity_id="other")) as state:
        state.conversation.set("topic", "outage")
    gate.set()
    await task
    async with StateManager(backend.open()).turn(message()) as state:
        assert state.user.get("messages") == 1
        assert state.conversation.get("turns") == 1
        assert state.conversation.get("topic") == "outage"
    assert len(runs) == (2 if atomic else 1)


async def test_a_write_item_from_a_foreign_writer_is_merged_like_any_other(backend: Backend) -> None:
    """Documents are plain JSON: another program writing a valid document is merged, not clobbered."""
    manager = StateManager(backend.open())
    async with manager.turn(message()) as state:
        state.conversation.set("a", 1)
    storage = backend.open()
    [key] = [k async for k in storage.list_keys("conversation/")]
    async with manager.turn(message()) as state:
        await storage.write({key: WriteItem(b'{"v":1,"data":{"a":1,"b":2}}')})
        state.conversation.set("c", 3)
    async with manager.turn(message()) as state:
        assert state.conversation.to_dict() == {"a": 1, "b": 2, "c": 3}


async def test_a_document_laid_out_in_another_member_order_is_compared_by_its_fields(
    backend: Backend,
) -> None:
    storage = backend.open()
    manager = StateManager(storage, dedupe=False)
    async with manager.turn(message()) as state:
        state.conversation.set("x", 0)
    [key] = [k async for k in storage.list_keys("conversation/")]
    # another writer put "meta" first; right after '{"v":1,"meta":' sits the text this turn will encode
    foreign = b'{"v":1,"meta":{"x":1},"data":{}}'
    await storage.write({key: WriteItem(foreign)})
    async with manager.turn(message()) as state:
        state.conversation.set("x", 1)
    async with manager.turn(message()) as state:
        assert state.conversation.to_dict() == {"x": 1}  # written, though its text followed that prefix
    async with manager.turn(message()) as state:
        state.conversation.set("x", 1)  # unchanged now: the canonical layout compares equal, no write
    assert manager.stats["writes"] == 2
