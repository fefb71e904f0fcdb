"""Shared by the instruction-count benchmarks: CPU instructions per turn, counted by valgrind.

A case runs in a child process under ``valgrind --tool=cachegrind`` twice, for a short and a long number
of turns after the same warm-up; the difference divided by the difference in turns cancels start-up and
import costs. Instruction counts do not move between runs the way CPU time does on a shared machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

SHORT, LONG = 1000, 3000


def require_valgrind() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")


def _count(script: str, case: str, turns: int) -> int:
    result = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            script,
            "--worker",
            case,
            str(turns),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run of {case!r} failed:\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_turn(script: str, case: str) -> float:
    """Instructions per turn of ``case``, run as ``python script --worker case turns``."""
    return (_count(script, case, LONG) - _count(script, case, SHORT)) / (LONG - SHORT)
