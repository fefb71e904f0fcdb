"""read_legacy on containers laid out as the Bot Framework SDK and the Microsoft 365 Agents SDK write them.

The fixtures are written here with the raw Azure SDK, in each SDK's layout: one block blob per key, named
after the key, holding the item as a JSON object (Bot Framework's with the "e_tag" it was read at).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from azure.storage.blob.aio import ContainerClient
from azurite_server import MakeStorage
from turnstate_blob import LegacyDocument, read_legacy

from turnstate.errors import CorruptDocumentError
from turnstate.storage.base import WriteItem

BOT_FRAMEWORK = {
    # botbuilder-python: jsonpickle of the state dict, "e_tag" set from the blob's ETag when it was read
    "msteams/conversations/19:abc@thread.v2": {
        "DialogState": {"dialogStack": [{"id": "main", "state": {"step": 2}}]},
        "turnCount": 7,
        "e_tag": '"0x8DC0A1B2C3D4E5F"',
    },
    "msteams/users/29:ann": {"profile": {"name": "Ann"}, "py/object": "bot.UserProfile", "e_tag": "*"},
}
AGENTS_SDK = {
    # microsoft-agents-storage-blob: json.dumps of store_item_to_json(), no ETag in the document
    "msteams/conversations/19:def@thread.v2/": {"ConversationState": {"count": 3}},
    "webchat/users/user 1": {"UserState": {"locale": "en-US"}},
}


async def put(
    container: ContainerClient, layout: dict[str, dict[str, object]], *, encode: bool = False
) -> None:
    for key, item in layout.items():
        name = quote(key, safe="") if encode else key
        await container.upload_blob(name, json.dumps(item).encode(), overwrite=True)


async def collected(container: ContainerClient, **options: object) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    async for entry in read_legacy(container, **options):  # type: ignore[arg-type]
        assert isinstance(entry, LegacyDocument)
        key, document = entry
        found[key] = document
    return found


async def test_bot_framework_and_agents_sdk_blobs_are_read_with_their_keys(
    make_storage: MakeStorage, raw_container: ContainerClient
) -> None:
    storage = make_storage()
    await storage.create_container()
    await put(raw_container, BOT_FRAMEWORK)
    await put(raw_container, AGENTS_SDK)
    await storage.write({"conversation/channel=msteams/conversation=19:abc@thread.v2": WriteItem(b"{}")})

    found = await collected(raw_container, batch=3)
    expected = {key: {f: v for f, v in item.items() if f != "e_tag"} for key, item in BOT_FRAMEWORK.items()}
    assert found == expected | AGENTS_SDK  # turnstate's own blob is skipped, the stale e_tag dropped
    assert "py/object" in found["msteams/users/29:ann"]
    assert await collected(raw_container, prefix="webchat/") == {
        "webchat/users/user 1": AGENTS_SDK["webchat/users/user 1"]
    }


async def test_url_encoded_names_are_decoded(
    make_storage: MakeStorage, raw_container: ContainerClient
) -> None:
    """The JavaScript and .NET BlobsStorage name blobs after the URL-encoded key."""
    await make_storage().create_container()
    await put(raw_container, BOT_FRAMEWORK, encode=True)
    assert set(await collected(raw_container, url_encoded_names=True)) == set(BOT_FRAMEWORK)
    assert "msteams%2Fusers%2F29%3Aann" in await collected(raw_container)


async def test_documents_copied_into_blob_storage_read_back(
    make_storage: MakeStorage, raw_container: ContainerClient
) -> None:
    """What a migration does: each legacy document under a new key, through the storage protocol."""
    await make_storage().create_container()
    await put(raw_container, AGENTS_SDK)
    storage = make_storage()
    copied = {
        f"migrated/{key}": WriteItem(json.dumps(document).encode(), if_match=None)
        async for key, document in read_legacy(raw_container)
    }
    await storage.write(copied)
    found = await storage.read(list(copied))
    assert {k: json.loads(v.value) for k, v in found.items()} == {
        f"migrated/{key}": item for key, item in AGENTS_SDK.items()
    }


async def test_a_blob_that_is_not_a_json_object_is_reported_by_name(
    make_storage: MakeStorage, raw_container: ContainerClient
) -> None:
    await make_storage().create_container()
    await raw_container.upload_blob("broken/item", b"[1, 2")
    with pytest.raises(CorruptDocumentError) as info:
        await collected(raw_container)
    assert info.value.key == "broken/item" and "'broken/item'" in str(info.value)
