"""The incident sample, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parent.parent / "samples" / "incident_bot.py"


def test_incident_scenario(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
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
