"""ctx.state semantics: scope API, typed gets, storable values, paths across scopes."""

from __future__ import annotations

import base64
import dataclasses
import decimal
import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from tests.support.activities import message
from turnstate import (
    MemoryStorage,
    MissingIdError,
    PathError,
    Scope,
    StateManager,
    StateTypeError,
    StateValueError,
    TurnClosedError,
    UnknownScopeError,
)
from turnstate.state import TurnState


class Profile(msgspec.Struct):
    email: str
    age: int


@dataclasses.dataclass
class Ticket:
    id: str
    priority: int


class Severity(enum.Enum):
    LOW = "low"
    HIGH = "high"


@pytest.fixture
def manager() -> StateManager:
    return StateManager(MemoryStorage())


async def roundtrip(manager: StateManager, path: str, value: Any, type_: Any = None) -> Any:
    async with manager.turn(message()) as state:
        state.set_value(path, value)
    async with manager.turn(message()) as state:
        return state.get_value(path, type_)


async def test_get_absent_returns_none_or_default(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        assert state.conversation.get("nope") is None
        assert state.conversation.get("nope", int, 7) == 7
        assert state.conversation.get("a.b.c") is None
        assert not state.conversation.has("nope")


@pytest.mark.parametrize(
    ("value", "type_", "expected"),
    [
        (3, int, 3),
        ("x", str, "x"),
        (1.5, float, 1.5),
        (2, float, 2.0),
        (True, bool, True),
        ([1, 2], list[int], [1, 2]),
        ({"a": 1}, dict[str, int], {"a": 1}),
        (Profile("a@x.io", 30), Profile, Profile("a@x.io", 30)),
        (Ticket("T-1", 2), Ticket, Ticket("T-1", 2)),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (uuid.UUID(int=5), uuid.UUID, uuid.UUID(int=5)),
        (decimal.Decimal("1.10"), decimal.Decimal, decimal.Decimal("1.10")),
        (Severity.HIGH, Severity, Severity.HIGH),
        ({1, 2}, set[int], {1, 2}),
        ((1, "a"), tuple[int, str], (1, "a")),
    ],
)
async def test_values_round_trip_through_storage_with_types(
    manager: StateManager, value: Any, type_: Any, expected: Any
) -> None:
    assert await roundtrip(manager, "conversation.v", value, type_) == expected


async def test_untyped_get_returns_json_form(manager: StateManager) -> None:
    assert await roundtrip(manager, "user.p", Profile("a@x.io", 3)) == {"email": "a@x.io", "age": 3}
    assert await roundtrip(manager, "user.when", datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"


async def test_typed_get_mismatch_names_path_and_both_types(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.conversation.set("count", "seven")
        with pytest.raises(StateTypeError) as info:
            state.conversation.get("count", int)
    text = str(info.value)
    assert "'conversation.count'" in text and "str" in text and "int" in text
    assert isinstance(info.value, TypeError)


async def test_typed_get_of_struct_with_missing_field(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.user.set("profile", {"email": "x"})
        with pytest.raises(StateTypeError, match=r"user\.profile"):
            state.user.get("profile", Profile)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (object(), "object"),
        (float("nan"), "nan"),
        ({"a": [1, float("inf")]}, "inf"),
        ({"a": (1.0, float("nan"))}, "nan"),
        (lambda: 1, "function"),
        ({"nested": {"bad": object()}}, "object"),
    ],
)
async def test_unstorable_values_fail_at_set_naming_the_path(
    manager: StateManager, value: Any, reason: str
) -> None:
    storage = manager.storage
    async with manager.turn(message()) as state:
        state.conversation.set("kept", 1)
        with pytest.raises(StateValueError) as info:
            state.conversation.set("bad.path", value)
        assert "'conversation.bad.path'" in str(info.value)
        assert reason in str(info.value)
        assert not state.conversation.has("bad")  # nothing half-set
    async with manager.turn(message()) as state:
        assert state.conversation.get("kept") == 1
    assert storage is manager.storage


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), [1.0, float("-inf")], {"a": {"b": float("nan")}}, (float("nan"),)]
)
async def test_a_non_finite_float_is_refused_in_one_sentence(manager: StateManager, value: Any) -> None:
    async with manager.turn(message()) as state:
        with pytest.raises(StateValueError) as info:
            state.user.set("score", value)
    text = str(info.value)
    assert text.count("cannot store") == 1 and text.count("no JSON form") == 1, text
    assert text.startswith("cannot store the value at 'user.score': ") and "store None or a string" in text


BINARY = [b"\x00\xffraw", bytearray(b"raw"), memoryview(b"raw"), {"blob": b"raw"}, [1, (2, b"raw")]]


@pytest.mark.parametrize("value", BINARY)
async def test_bytes_are_refused_naming_the_path_and_how_to_store_them(
    manager: StateManager, value: Any
) -> None:
    """Bytes are not turned into text behind the caller's back: set() and set_value() refuse them, and the
    field keeps what it held."""
    async with manager.turn(message()) as state:
        state.user.set("avatar", "kept")
    async with manager.turn(message()) as state:
        for call, where in (
            (lambda: state.user.set("avatar", value), "user.avatar"),
            (lambda: state.set_value("user.avatar", value), "user.avatar"),
            (lambda: state.set_value("user.images.avatar", value), "user.images.avatar"),
        ):
            with pytest.raises(StateValueError) as info:
                call()
            text = str(info.value)
            assert info.value.path == where and text.startswith(f"cannot store the value at {where!r}: ")
            assert "has no JSON form" in text and "base64.b64encode(data).decode('ascii')" in text
            assert text.count("cannot store") == 1 and "raw" not in text
        assert state.get_value("user.avatar") == "kept" and not state.has_value("user.images")
    async with manager.turn(message()) as state:
        assert state.get_value("user.avatar") == "kept"


async def test_binary_data_stored_as_base64_text_reads_back_as_bytes(manager: StateManager) -> None:
    data = bytes(range(256))
    async with manager.turn(message()) as state:
        state.user.set("avatar", base64.b64encode(data).decode("ascii"))
    async with manager.turn(message()) as state:
        assert state.user.get("avatar", bytes) == data
        assert state.get_value("user.avatar", bytes) == data


async def test_a_value_nested_past_the_recursion_limit_is_refused_naming_the_path(
    manager: StateManager,
) -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    async with manager.turn(message()) as state:
        with pytest.raises(StateValueError, match=r"'user\.deep'.*nested too deeply"):
            state.user.set("deep", deep)
        assert not state.user.has("deep")


async def test_set_copies_containers(manager: StateManager) -> None:
    prefs = {"language": "en"}
    async with manager.turn(message()) as state:
        state.user.set("prefs", prefs)
        prefs["language"] = "fr"
        assert state.user.get("prefs") == {"language": "en"}


async def test_a_tuple_is_stored_and_read_back_as_a_list_in_this_turn_and_the_next(
    manager: StateManager,
) -> None:
    async with manager.turn(message()) as state:
        state.user.set("pair", (1, (2, 3)))
        state.user.set("nested", {"pairs": [("a", 1)]})
        assert state.user.get("pair") == [1, [2, 3]]  # what decoding the stored JSON gives
        assert state.user.get("nested") == {"pairs": [["a", 1]]}
    async with manager.turn(message()) as state:
        assert state.user.get("pair") == [1, [2, 3]]
        assert state.user.get("nested") == {"pairs": [["a", 1]]}


async def test_in_place_edits_of_got_values_are_committed(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.conversation.set("items", [1])
    async with manager.turn(message()) as state:
        state.conversation.get("items").append(2)
    async with manager.turn(message()) as state:
        assert state.conversation.get("items") == [1, 2]


async def test_nested_paths(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.set_value("user.profile.email", "a@x.io")
        state.user.set("profile.name", "Ann")
        assert state.user.get("profile") == {"email": "a@x.io", "name": "Ann"}
        assert state.has_value("user.profile.email")
        assert state.delete_value("user.profile.email") is True
        assert state.delete_value("user.profile.email") is False
        assert state.user.get("profile") == {"name": "Ann"}


async def test_path_through_a_non_object_raises_path_error(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.conversation.set("count", 3)
        for call in (
            lambda: state.conversation.get("count.x"),
            lambda: state.conversation.set("count.x", 1),
            lambda: state.conversation.has("count.x"),
        ):
            with pytest.raises(PathError, match=r"conversation\.count\.x"):
                call()


async def test_dotted_keys_with_escape(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.set_value("user.settings.a\\.b", 1)
        assert state.user.get("settings") == {"a.b": 1}
        state.set_value("a\\.b", 2)
        assert state.temp.get("a\\.b") == 2
        assert state.temp.keys() == ["a.b"]


async def test_unknown_scope_in_path_is_an_error_not_temp(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        with pytest.raises(UnknownScopeError) as info:
            state.set_value("converstion.count", 1)
        assert "'converstion'" in str(info.value) and "conversation" in str(info.value)
        with pytest.raises(PathError):
            state.get_value("conversation.")
        with pytest.raises(UnknownScopeError):
            state.scope("nope")
        with pytest.raises(AttributeError, match="nope"):
            state.nope  # noqa: B018


async def test_incr(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        assert state.conversation.incr("n") == 1
        assert state.conversation.incr("n", 4) == 5
        assert state.conversation.incr("stats.x", 0.5) == 0.5
        state.conversation.set("s", "text")
        with pytest.raises(StateTypeError, match=r"conversation\.s"):
            state.conversation.incr("s")
    async with manager.turn(message()) as state:
        assert state.conversation.get("n") == 5


async def test_clear_and_keys(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.user.set("a", 1)
        state.user.set("b", 2)
        assert sorted(state.user.keys()) == ["a", "b"]
        assert sorted(state.user) == ["a", "b"]
    async with manager.turn(message()) as state:
        state.user.clear()
    async with manager.turn(message()) as state:
        assert state.user.keys() == []


async def test_to_dict_is_a_deep_copy(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.user.set("p", {"a": [1]})
        copy = state.user.to_dict()
        copy["p"]["a"].append(2)
        assert state.user.get("p") == {"a": [1]}


async def test_state_after_the_turn_raises_turn_closed(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        pass
    with pytest.raises(TurnClosedError):
        state.conversation.set("late", 1)
    with pytest.raises(TurnClosedError):
        state.temp.get("x")


async def test_temp_is_one_scope_per_turn_reachable_every_way(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        assert state.scope_names == ("conversation", "user", "private", "temp")
        state.set_value("a", 1)
        state.set_value("temp.b", 2)
        assert state.scope("temp") is state.temp
        assert state.temp.to_dict() == {"a": 1, "b": 2}
        assert state.scope_names == ("conversation", "user", "private", "temp")
        assert "temp" in repr(state)
    with pytest.raises(TurnClosedError):
        state.get_value("a")
    async with manager.turn(message()) as state:
        assert state.get_value("temp.a") is None  # a new turn, a new temp scope
    with pytest.raises(TurnClosedError):
        state.temp.set("late", 1)
    with pytest.raises(TurnClosedError):
        state.set_value("late", 1)


async def test_missing_ids_make_only_that_scope_unavailable() -> None:
    manager = StateManager(MemoryStorage())
    async with manager.turn(message(user=None)) as state:
        state.conversation.set("ok", 1)
        for call in (lambda: state.user.get("x"), lambda: state.private.set("x", 1)):
            with pytest.raises(MissingIdError) as info:
                call()
            assert "user id" in str(info.value)
        assert "unavailable" in repr(state.user)
    async with manager.turn(message(user="29:someone")) as state:
        assert state.conversation.get("ok") == 1
        assert state.user.keys() == []


async def test_custom_scope_keyed_by_incident() -> None:
    incident = Scope("incident", key=lambda activity: (activity.value or {}).get("incident"))
    storage = MemoryStorage()
    manager = StateManager(storage, scopes=[incident])
    async with manager.turn(message(value={"incident": "INC-1"})) as state:
        state.incident.set("owner", "ann")
        state.scope("incident").incr("updates")
    async with manager.turn(message(conversation="19:other", value={"incident": "INC-1"})) as state:
        assert state.get_value("incident.owner") == "ann"
    async with manager.turn(message(value={"incident": "INC-2"})) as state:
        assert state.incident.get("owner") is None
    async with manager.turn(message()) as state:
        with pytest.raises(MissingIdError, match="incident"):
            state.incident.get("owner")
    keys = [key async for key in storage.list_keys("incident/")]
    assert [k for k in keys if k.endswith("/id=INC-1")]


def test_invalid_custom_scopes() -> None:
    for name in ("conversation", "temp", "Bad", "", "1x", "a-b"):
        with pytest.raises(ValueError, match="scope name"):
            Scope(name, key=lambda a: "x")
    with pytest.raises(ValueError, match="twice"):
        StateManager(MemoryStorage(), scopes=[Scope("x", key=str), Scope("x", key=str)])
    with pytest.raises(ValueError, match="ttl"):
        StateManager(MemoryStorage(), ttl={"nope": 1})
    with pytest.raises(ValueError, match="ttl"):
        StateManager(MemoryStorage(), ttl={"user": 0})


async def test_disabled_builtin_scope() -> None:
    manager = StateManager(MemoryStorage(), builtin_scopes=("conversation", "user"))
    async with manager.turn(message()) as state:
        with pytest.raises(UnknownScopeError, match="private") as info:
            state.private.get("x")
        assert "builtin_scopes" in str(info.value) and "'private.x'" in str(info.value)


async def test_reprs_show_field_names_never_values(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.user.set("email", "secret@example.com")
        assert "secret" not in repr(state.user)
        assert "email" in repr(state.user)
        assert isinstance(state, TurnState) and "user" in repr(state)


@pytest.mark.parametrize(
    ("change", "shaped"),
    [
        (lambda s: s.set("n", 1), False),
        (lambda s: s.set("name", "a longer string than a credential's minimum length"), False),
        (lambda s: s.set("ratio", 0.5), False),
        (lambda s: s.set("flag", None), False),
        (lambda s: s.incr("count"), False),
        (lambda s: s.set("profile", {"a": 1}), True),
        (lambda s: s.set("tags", ("a", "b")), True),
        (lambda s: s.set("profile.a", 1), True),
        (lambda s: s.incr("stats.count"), True),
        (lambda s: s.delete("n"), True),
        (lambda s: s.clear(), True),
    ],
)
def test_a_scope_knows_whether_any_field_may_have_gained_or_lost_an_object(change: Any, shaped: bool) -> None:
    """The document cache reuses the loaded fields' shape only while just scalars were set at top level."""
    from turnstate.state import ScopeState

    scope = ScopeState("user", "user/u", {"n": 0, "profile": {"a": 0}})
    assert not scope.shaped
    change(scope)
    assert scope.shaped is shaped
