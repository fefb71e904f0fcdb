from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.activities import message
from turnstate import Activity
from turnstate.keys import KeyScheme, TurnIds, ids_of


def test_ids_from_dict_activity_and_struct_agree() -> None:
    raw = message(activity_id="a-1")
    assert ids_of(raw) == ids_of(Activity.from_dict(raw))
    assert ids_of(raw) == TurnIds(
        channel="msteams",
        conversation="19:conv-1@thread.v2",
        user="29:user-1",
        bot="28:bot-1",
        tenant="tenant-1",
        activity="a-1",
    )


def test_tenant_from_channel_data() -> None:
    raw = message(tenant=None, channelData={"tenant": {"id": "t-9"}})
    assert ids_of(raw).tenant == "t-9"
    assert ids_of(Activity.from_dict(raw)).tenant == "t-9"


def test_ids_from_snake_case_objects() -> None:
    class Account:
        def __init__(self, id: str) -> None:
            self.id = id

    class Conversation(Account):
        tenant_id = "t-2"

    class BotbuilderStyle:
        channel_id = "msteams"
        id = "a-7"
        conversation = Conversation("c-1")
        from_property = Account("u-1")
        recipient = Account("b-1")

    assert ids_of(BotbuilderStyle()) == TurnIds("msteams", "c-1", "u-1", "b-1", "t-2", "a-7")


def test_key_layout() -> None:
    ids = ids_of(message())
    scheme = KeyScheme()
    assert scheme.conversation(ids).key == (
        "conversation/channel=msteams/tenant=tenant-1/bot=28:bot-1/conversation=19:conv-1@thread.v2"
    )
    assert scheme.user(ids).key == "user/channel=msteams/tenant=tenant-1/bot=28:bot-1/user=29:user-1"
    assert scheme.private(ids).key == (
        "private/channel=msteams/tenant=tenant-1/bot=28:bot-1/conversation=19:conv-1@thread.v2/user=29:user-1"
    )
    assert scheme.custom("incident", ids, "INC/7").key == (
        "incident/channel=msteams/tenant=tenant-1/bot=28:bot-1/id=INC%2F7"
    )


def test_bots_and_tenants_are_kept_apart() -> None:
    scheme = KeyScheme()
    keys = {
        scheme.conversation(ids_of(message(bot=bot, tenant=tenant))).key
        for bot in ("28:a", "28:b", None)
        for tenant in ("t1", "t2", None)
    }
    assert len(keys) == 9


def test_isolation_can_be_turned_off() -> None:
    scheme = KeyScheme(isolate_bots=False, isolate_tenants=False)
    assert scheme.user(ids_of(message(bot="28:a"))).key == scheme.user(ids_of(message(bot="28:b"))).key


@pytest.mark.parametrize(
    ("overrides", "scope", "missing"),
    [
        ({"conversation": None}, "conversation", "conversation id"),
        ({"user": None}, "user", "user id"),
        ({"user": None}, "private", "user id"),
        ({"channel": None}, "user", "channel id"),
        ({"conversation": ""}, "conversation", "conversation id"),
    ],
)
def test_missing_ids_never_render_a_key(overrides: dict[str, Any], scope: str, missing: str) -> None:
    result = getattr(KeyScheme(), scope)(ids_of(message(**overrides)))
    assert result.key is None
    assert result.missing is not None and missing in result.missing


ids_strategy = st.builds(
    TurnIds,
    channel=st.text(min_size=1, max_size=8),
    conversation=st.text(min_size=1, max_size=8),
    user=st.text(min_size=1, max_size=8),
    bot=st.none() | st.text(min_size=1, max_size=8),
    tenant=st.none() | st.text(min_size=1, max_size=8),
)


@given(ids_strategy, ids_strategy)
def test_different_ids_never_share_a_key(a: TurnIds, b: TurnIds) -> None:
    scheme = KeyScheme()
    for scope in ("conversation", "user", "private"):
        key_a = getattr(scheme, scope)(a).key
        key_b = getattr(scheme, scope)(b).key
        relevant = {
            "conversation": ("channel", "conversation", "bot", "tenant"),
            "user": ("channel", "user", "bot", "tenant"),
            "private": ("channel", "conversation", "user", "bot", "tenant"),
        }[scope]
        same = all(getattr(a, f) == getattr(b, f) for f in relevant)
        assert (key_a == key_b) == same
