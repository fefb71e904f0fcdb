"""The ``turnstate`` script on a terminal: a progress bar (rich) or plain lines, and confirmation prompts."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.support.cli_targets import SCRIPT
from turnstate.document import encode, encode_data
from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage


async def seed(directory: Path, count: int) -> None:
    async with FileStorage(directory, fsync=False) as storage:
        await storage.write({f"user/{i:03}": WriteItem(encode(encode_data({"n": i}))) for i in range(count)})


def on_terminal(*args: str, answer: str = "", env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the script with stdin, stdout and stderr on a pseudo-terminal; type ``answer``; return its
    exit status and everything it showed."""
    main, other = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "TURNSTATE_STORAGE"}
    environment.update({"COLUMNS": "120", "TERM": "xterm", **(env or {})})
    with subprocess.Popen(
        [str(SCRIPT), *args], stdin=other, stdout=other, stderr=other, env=environment
    ) as process:
        os.close(other)
        if answer:
            os.write(main, answer.encode())
        shown = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            shown += chunk
        code = process.wait(timeout=60)
    os.close(main)
    return code, shown.decode(errors="replace")


async def test_a_terminal_gets_a_progress_bar_with_rate_and_eta(tmp_path: Path) -> None:
    await seed(tmp_path / "state", 50)
    code, shown = on_terminal("export", "-s", f"file:{tmp_path / 'state'}", "-o", str(tmp_path / "out.jsonl"))
    assert code == 0, shown
    assert "━" in shown and "50/50" in shown and "ETA" in shown and "/s" in shown
    assert "exported 50 documents" in shown
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 50


async def test_without_rich_a_terminal_gets_plain_progress_lines(tmp_path: Path) -> None:
    await seed(tmp_path / "state", 250)
    hide = tmp_path / "no-rich" / "rich"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('rich is not installed')\n")
    code, shown = on_terminal(
        "export",
        "--progress-every",
        "100",
        "-s",
        f"file:{tmp_path / 'state'}",
        "-o",
        str(tmp_path / "out.jsonl"),
        env={"PYTHONPATH": str(hide.parent)},
    )
    assert code == 0, shown
    assert (
        "exported 100/250 (40%)" in shown
        and "exported 200/250 (80%)" in shown
        and "exported 250/250 (100%)" in shown
    )
    assert "━" not in shown


async def test_a_destructive_command_asks_first_on_a_terminal(tmp_path: Path) -> None:
    await seed(tmp_path / "state", 2)
    url = f"file:{tmp_path / 'state'}"
    code, shown = on_terminal("rm", "user/000", "--force", "-s", url, answer="n\n")
    assert code == 2 and "Delete 'user/000' whatever it holds? [y/N]" in shown and "not confirmed" in shown
    async with FileStorage(tmp_path / "state") as storage:
        assert "user/000" in await storage.read(["user/000"])
    code, shown = on_terminal("rm", "user/000", "--force", "-s", url, answer="y\n")
    assert code == 0 and "deleted 'user/000'" in shown, shown
    async with FileStorage(tmp_path / "state") as storage:
        assert await storage.read(["user/000"]) == {}


def test_importing_turnstate_or_its_command_does_not_load_rich() -> None:
    check = "import sys, turnstate, turnstate.cli; assert 'rich' not in sys.modules, 'rich was imported'"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
