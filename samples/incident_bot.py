"""An incident bot for a Teams channel: two responders at once, redelivered activities, PII encrypted.

    python samples/incident_bot.py            # runs the scripted scenario below against FileStorage

The reporter's details are encrypted with the key in INCIDENT_BOT_KEY (base64 of 32 bytes). Without it,
the run makes a random key of its own and says so: what it stores cannot be read by any other run.

What it shows:
- an ``incident`` scope keyed by the incident id, shared by every conversation that talks about it;
- two responders acting on one incident at the same moment: different fields both land, notes from both
  are kept ("union"), acknowledgements add up (``incr``), and two people claiming it get a clear
  conflict instead of a silent overwrite ("raise");
- Teams re-sending an activity: the step runs once;
- the reporter's contact details encrypted at rest (``incident.reporter.*``), readable by the bot;
- incident state expiring 30 days after its last change.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from turnstate import Activity, KeyRing, MergeConflictError, Scope
from turnstate.errors import EncryptionError
from turnstate.runtime import Bot, TurnContext
from turnstate.storage.file import FileStorage

INCIDENT = Scope(
    "incident",
    key=lambda activity: (activity.value or {}).get("incident") if activity.value else None,
    ttl=30 * 24 * 3600,
)


def build_bot(storage: FileStorage, keys: KeyRing) -> Bot:
    bot = Bot()
    bot.use_state(
        storage,
        scopes=[INCIDENT],
        merge={
            "incident.owner": "raise",
            "incident.notes": "union",
        },
        encrypt=["incident.reporter.*"],
        keys=keys,
    )

    @bot.on("message")
    async def on_message(ctx: TurnContext) -> None:
        assert ctx.state is not None
        value: dict[str, Any] = ctx.activity.value or {}
        who = ctx.activity.from_.name if ctx.activity.from_ else "someone"
        incident = ctx.state.incident
        action = value.get("action")
        if action == "open":
            incident.set("title", value["title"])
            incident.set("status", "open")
            incident.set("reporter", {"name": value["reporter"], "phone": value["phone"]})
            incident.set("notes", [])
            await ctx.send(f"{value['incident']} opened: {value['title']}")
        elif action == "claim":
            incident.set("owner", who)
            await ctx.send(f"{who} owns {value['incident']}")
        elif action == "note":
            notes = incident.get("notes", list) or []
            notes.append(f"{who}: {value['text']}")
            incident.set("notes", notes)
        elif action == "ack":
            incident.incr("acks")
        elif action == "mitigate":
            incident.set("status", "mitigating")
            incident.incr("runbook.step")
            await ctx.send(f"runbook step {incident.get('runbook.step')} started by {who}")
        elif action == "status":
            await ctx.send(json.dumps(incident.to_dict(), sort_keys=True))

    @bot.on_duplicate
    async def duplicate(ctx: TurnContext) -> None:
        await ctx.send(f"(activity {ctx.activity.id} was already handled)")

    return bot


def activity(activity_id: str, who: str, **value: Any) -> Activity:
    return Activity.from_dict(
        {
            "type": "message",
            "id": activity_id,
            "channelId": "msteams",
            "conversation": {"id": "19:ops-channel@thread.tacv2", "tenantId": "contoso"},
            "from": {"id": f"29:{who.lower()}", "name": who},
            "recipient": {"id": "28:incident-bot"},
            "value": value,
        }
    )


def load_keys() -> KeyRing:
    """The key in INCIDENT_BOT_KEY, or else a random one made for this run only (never a fixed one)."""
    given = os.environ.get("INCIDENT_BOT_KEY")
    if given:
        try:
            return KeyRing({"k1": base64.b64decode(given, validate=True)})
        except (binascii.Error, ValueError) as exc:
            raise SystemExit(
                "INCIDENT_BOT_KEY must be base64 of 32 random bytes, for example the output of "
                "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
            ) from exc
    kid = f"run-{os.urandom(4).hex()}"
    print(
        f"INCIDENT_BOT_KEY is not set: encrypting with a random key made for this run only (key id {kid!r}); "
        "what this run stores cannot be read by another run. Set INCIDENT_BOT_KEY to keep a key."
    )
    return KeyRing({kid: os.urandom(32)})


async def say(bot: Bot, act: Activity) -> None:
    try:
        for reply in await bot.process(act):
            print(f"  bot> {reply['text']}")
    except MergeConflictError as exc:
        print(f"  bot> conflict: {', '.join(exc.paths)} was changed by someone else at the same time")
    except EncryptionError as exc:  # the message names the document and field, never their contents
        print(f"  bot> cannot read the state: {exc}")


async def scenario(directory: Path) -> None:
    keys = load_keys()
    # two bot instances (as after a scale-out) sharing one state directory
    async with FileStorage(directory) as storage_a, FileStorage(directory) as storage_b:
        a, b = build_bot(storage_a, keys), build_bot(storage_b, keys)
        inc = {"incident": "INC-7"}

        print("Ann opens INC-7")
        await say(
            a,
            activity(
                "a1",
                "Ann",
                action="open",
                title="Checkout API 500s",
                reporter="Ravi Patel",
                phone="+1 555 0100",
                **inc,
            ),
        )

        print("Ann and Bob act at the same moment, on different instances")
        await asyncio.gather(
            say(a, activity("a2", "Ann", action="note", text="errors started 09:14", **inc)),
            say(b, activity("b1", "Bob", action="note", text="rollback candidate: build 812", **inc)),
            say(a, activity("a3", "Ann", action="ack", **inc)),
            say(b, activity("b2", "Bob", action="ack", **inc)),
        )

        print("Ann and Bob both claim it at the same moment")
        await asyncio.gather(
            say(a, activity("a4", "Ann", action="claim", **inc)),
            say(b, activity("b3", "Bob", action="claim", **inc)),
        )

        print("Bob starts the runbook; Teams re-sends the same activity")
        await say(b, activity("b4", "Bob", action="mitigate", **inc))
        await say(a, activity("b4", "Bob", action="mitigate", **inc))

        print("Status")
        await say(a, activity("a5", "Ann", action="status", **inc))

    stored = b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())
    print(f"reporter's phone stored in plaintext: {b'555 0100' in stored}")


def main() -> None:
    parser = argparse.ArgumentParser(description="An incident bot scenario with two responders.")
    parser.add_argument("--state-dir", type=Path, help="where to keep state (default: a fresh temp dir)")
    args = parser.parse_args()
    if args.state_dir:
        asyncio.run(scenario(args.state_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="incident-bot-") as directory:
            asyncio.run(scenario(Path(directory)))


if __name__ == "__main__":
    main()
