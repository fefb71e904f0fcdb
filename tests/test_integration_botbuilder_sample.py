"""The botbuilder_dialogs sample, run by its script as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "scripts" / "botbuilder-dialogs"


def run(*args: str) -> list[str]:
    result = subprocess.run(
        [str(SCRIPT), *args],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.splitlines()


def test_the_script_drives_the_dialog_to_its_end_once(tmp_path: Path) -> None:
    assert run("--state-dir", str(tmp_path)) == [
        "> hi  [m-1]",
        "< What is your name?",
        "> Ada  [m-2]",
        "< How old are you, Ada?",
        "> Ada  [m-2]",
        "> 200  [m-3]",
        "< Please give an age between 1 and 120.",
        "> 36  [m-4]",
        "< Thanks Ada, you are 36.",
    ]
    assert any(p.is_file() for p in tmp_path.rglob("*"))  # the state stayed in the directory
