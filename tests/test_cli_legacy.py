"""``turnstate migrate --from``: a Bot Framework SDK or Agents SDK bot's stored state, from the JSON files
those SDKs' storages hold, into a turnstate storage, through the installed console script."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli_targets import one_line_error, turnstate
from turnstate import StateManager
from turnstate.integrations.botbuilder import BotBuilderStorage
from turnstate.storage.file import FileStorage

CONVERSATION = "msteams/conversations/19:conv-1@thread.v2"
USER = "msteams/users/29:user-1"


async def test_a_botbuilder_memory_storage_dump_migrates_and_a_rerun_skips_it(tmp_path: Path) -> None:
    dump = tmp_path / "memory.json"
    dump.write_text(json.dumps({CONVERSATION: {"turns": 3, "e_tag": "7"}, USER: {"name": "Ada"}}))
    target = f"file:{tmp_path / 'state'}"
    first = turnstate("migrate", "--from", "botbuilder", str(dump), target, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["copied"] == 2
    async with FileStorage(tmp_path / "state") as storage:
        items = await BotBuilderStorage(storage).read([CONVERSATION, USER])
    assert items[CONVERSATION]["turns"] == 3 and items[USER]["name"] == "Ada"
    again = turnstate("migrate", "--from", "botbuilder", str(dump), target, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"skipped_keys": []} == {"copied": 0, "skipped": 2, "skipped_keys": []}


async def test_agents_sdk_cosmos_items_migrate_into_turnstate_scopes(tmp_path: Path) -> None:
    items = [
        {"id": "msteams*conversations*19:conv-1@thread.v2", "realId": CONVERSATION, "document": {"count": 3}},
        {"id": "msteams*users*29:user-1", "realId": USER, "document": {"name": "Ann"}},
        {"id": "auth*x", "realId": "auth/msteams/29:user-1/graph", "document": {"tag": "begin"}},
    ]
    dump = tmp_path / "items.json"
    dump.write_text(json.dumps(items))
    target = f"file:{tmp_path / 'state'}"
    result = turnstate(
        "migrate", "--from", "agents", str(dump), target, "--bot", "28:bot-1", "--tenant", "tenant-1"
    )
    assert result.returncode == 0, result.stderr
    assert "copied 2 items; skipped 1" in result.stdout and "auth/msteams" in result.stdout
    activity = {
        "type": "message",
        "id": "after-migration",
        "channelId": "msteams",
        "conversation": {"id": "19:conv-1@thread.v2", "tenantId": "tenant-1"},
        "from": {"id": "29:user-1"},
        "recipient": {"id": "28:bot-1"},
    }
    async with FileStorage(tmp_path / "state") as storage, StateManager(storage).turn(activity) as state:
        assert state.conversation.get("count") == 3 and state.user.get("name") == "Ann"


def test_migrating_from_the_agents_sdk_needs_the_bot_id(tmp_path: Path) -> None:
    dump = tmp_path / "memory.json"
    dump.write_text("{}")
    assert "--bot" in one_line_error(turnstate("migrate", "--from", "agents", str(dump), "file:x"), 2)
    assert "not JSON" in one_line_error(turnstate("migrate", "--from", "botbuilder", __file__, "file:x"), 2)
