"""samples/agents_sdk/ run as a user would: its drive script, twice on one state directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parent.parent / "samples" / "agents_sdk" / "drive.py"


def drive(state_dir: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.splitlines()


def test_the_sample_counts_drops_a_redelivery_and_keeps_state_across_runs(tmp_path: Path) -> None:
    assert drive(tmp_path) == [
        "Ann: hello -> Turn #1, Ann",
        "Ann: again -> Turn #2, Ann",
        "Ann: again (redelivered) -> (already handled: no reply)",
        "Bob: hi -> Turn #3, Bob",
    ]
    # a restarted process sent the same activities again (a channel's retries): none is handled twice
    assert all(line.endswith("(already handled: no reply)") for line in drive(tmp_path))
