"""The framework integrations load only when imported, and say which extra to install when it is missing."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_turnstate_loads_no_framework_and_a_missing_sdk_names_the_extra() -> None:
    code = (
        "import sys, json, turnstate\n"
        "frameworks = ('microsoft_agents', 'microsoft_teams', 'botbuilder')\n"
        "loaded = [m for m in sys.modules if m.startswith(frameworks)]\n"
        "sys.modules['microsoft_agents'] = None\n"
        "sys.modules['microsoft_teams'] = None\n"
        "errors = []\n"
        "for name in ('turnstate.integrations.agents', 'turnstate.integrations.teams'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError as exc:\n"
        "        errors.append(str(exc))\n"
        "print(json.dumps([loaded, errors]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, errors = json.loads(out)
    assert loaded == []
    assert "pip install 'turnstate[agents]'" in errors[0]
    assert "pip install 'turnstate[teams]'" in errors[1]
