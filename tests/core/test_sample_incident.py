"""The incident sample, run as a user would."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parents[2] / "samples" / "incident_bot.py"


def run(state_dir: Path, key: str | None = None) -> list[str]:
    env = {name: value for name, value in os.environ.items() if name != "INCIDENT_BOT_KEY"}
    if key is not None:
        env["INCIDENT_BOT_KEY"] = key
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return result.stdout.splitlines()


def announced_key_id(lines: list[str]) -> str:
    found = re.fullmatch(
        r"INCIDENT_BOT_KEY is not set: encrypting with a random key .*\(key id '([^']+)'\).*", lines[0]
    )
    assert found is not None, lines[0]
    return found.group(1)


def test_incident_scenario(tmp_path: Path) -> None:
    lines = run(tmp_path)
    announced_key_id(lines)
    status = json.loads(next(line for line in lines if line.startswith("  bot> {")).removeprefix("  bot> "))
    assert sorted(status["notes"]) == ["Ann: errors started 09:14", "Bob: rollback candidate: build 812"]
    assert status["acks"] == 2
    assert status["runbook"] == {"step": 1}
    assert status["owner"] in ("Ann", "Bob")
    assert status["reporter"] == {"name": "Ravi Patel", "phone": "+1 555 0100"}
    assert sum("conflict: incident.owner" in line for line in lines) <= 1
    assert "  bot> (activity b4 was already handled)" in lines
    assert lines[-1] == "reporter's phone stored in plaintext: False"
    assert b"555 0100" not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())


def test_without_a_key_each_run_encrypts_with_its_own_random_key(tmp_path: Path) -> None:
    """No fixed key: a second run over the first run's state cannot decrypt it, and says why."""
    first = run(tmp_path)
    assert first[-1] == "reporter's phone stored in plaintext: False"
    second = run(tmp_path)
    first_id, second_id = announced_key_id(first), announced_key_id(second)
    assert first_id != second_id
    refusals = [line for line in second if line.startswith("  bot> cannot read the state: cannot decrypt")]
    assert refusals and all(f"encrypted under key id {first_id!r}" in line for line in refusals)
    assert not any("Ravi Patel" in line or "555 0100" in line for line in second)
    # no key is ever printed: no run of base64 as long as a 32-byte key's
    assert not any(re.search(r"[A-Za-z0-9+/]{43}=", line) for line in first + second)


def test_a_key_given_in_the_environment_reads_state_across_runs(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    for _ in range(2):
        lines = run(tmp_path, key)
        assert not any("INCIDENT_BOT_KEY is not set" in line or "cannot read" in line for line in lines)
        status = json.loads(
            next(line for line in lines if line.startswith("  bot> {")).removeprefix("  bot> ")
        )
        assert status["reporter"] == {"name": "Ravi Patel", "phone": "+1 555 0100"}
