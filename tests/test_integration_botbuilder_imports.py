"""The botbuilder integration loads only when imported, and says how to install what it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_importing_turnstate_loads_no_botbuilder_module() -> None:
    code = (
        "import sys, turnstate, turnstate.integrations; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('botbuilder', 'jsonpickle')))"
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("hidden", ["botbuilder", "jsonpickle"])
def test_the_integration_without_the_extra_fails_with_an_install_hint(hidden: str) -> None:
    # a None entry in sys.modules makes that import fail, as if the package were not installed
    code = f"import sys; sys.modules[{hidden!r}] = None; import turnstate.integrations.botbuilder"
    result = run(code)
    assert result.returncode == 1
    assert "ImportError: turnstate.integrations.botbuilder needs botbuilder-core and jsonpickle" in (
        result.stderr
    )
    assert "pip install 'turnstate[botbuilder]'" in result.stderr
