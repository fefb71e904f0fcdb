"""The counter sample, run as a user would: two processes on one state directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parents[2] / "samples" / "counter_bot.py"


def run(state_dir: Path, *args: str, stdin: str | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--state-dir", str(state_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_count_continues_after_a_restart(tmp_path: Path) -> None:
    first = run(tmp_path, "hello", "again")
    assert [line.split("] ", 1)[1] for line in first] == [
        "Turn #1 in this conversation. Ann, you have sent 1.",
        "Turn #2 in this conversation. Ann, you have sent 2.",
    ]
    second = run(tmp_path, stdin="from stdin\n\n")
    assert second[0].endswith("Turn #3 in this conversation. Ann, you have sent 3.")
    other_user = run(tmp_path, "--user", "bob", "hi")
    assert other_user[0].endswith("Turn #4 in this conversation. Bob, you have sent 1.")


def test_state_files_are_json_documents(tmp_path: Path) -> None:
    run(tmp_path, "hello")
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert len(files) == 2
    values = [json.loads(p.read_text())["value"]["data"] for p in files]
    assert {"turnCount": 1, "lastMessage": "hello"} in values
    assert {"displayName": "Ann", "messagesSent": 1} in values


def test_reset_and_show_state(tmp_path: Path) -> None:
    run(tmp_path, "one", "two")
    out = run(tmp_path, "--show-state", "reset", "three")
    assert out[0].endswith("Conversation state cleared.")
    assert out[1].endswith("Turn #1 in this conversation. Ann, you have sent 3.")
    assert any("state kept in" in line for line in out)
