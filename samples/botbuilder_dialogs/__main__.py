"""Drive the profile bot offline: scripted activities through botbuilder's TestAdapter, state in files.

    python samples/botbuilder_dialogs [--state-dir DIR]

One activity is delivered twice, as a channel retry would; the dialog advances once.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bot import wire
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from turnstate import FileStorage

SCRIPT = [("m-1", "hi"), ("m-2", "Ada"), ("m-2", "Ada"), ("m-3", "200"), ("m-4", "36")]


async def main(state_dir: Path) -> None:
    async with FileStorage(state_dir) as storage:
        adapter = TestAdapter()
        adapter.logic = wire(adapter, storage).on_turn
        for activity_id, text in SCRIPT:
            print(f"> {text}  [{activity_id}]")
            await adapter.receive_activity(
                Activity(
                    type="message",
                    id=activity_id,
                    text=text,
                    channel_id="msteams",
                    service_url="https://test.example",
                    conversation=ConversationAccount(id="19:profile-demo"),
                    from_property=ChannelAccount(id="u-1", name="Ada"),
                    recipient=ChannelAccount(id="28:bot"),
                )
            )
            while adapter.activity_buffer:
                print(f"< {adapter.activity_buffer.pop(0).text}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--state-dir", type=Path, help="where FileStorage keeps state (default: a temp dir)")
    args = parser.parse_args()
    if args.state_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
    else:
        asyncio.run(main(args.state_dir))
