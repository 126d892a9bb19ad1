"""The plugin's registration: container.run and the docker runner, without the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# A fresh interpreter: what registering imports is read from sys.modules. No Docker engine
# is needed: with fallback = "refuse" the approval warning asks no engine.
CODE = textwrap.dedent(
    """
    import asyncio, json, sys
    from openpista import PluginContext
    from openpista.config import Settings
    from openpista.plugins import PluginHost
    from openpista.runtime import build_toolbox

    def loaded():
        names = ("openpista_docker.sandbox", "openpista.worker_service")
        return [name for name in names if name in sys.modules]

    host = PluginHost.load(environ={"OPENPISTA_LOAD_PLUGINS": "docker"})
    settings = Settings(
        agent={"workspace": sys.argv[1]}, tools={"docker": {"images": ["alpine:3"], "timeout": 20}}
    )
    context = PluginContext(settings)
    toolbox = build_toolbox(host, settings, context)
    tool = toolbox.tools.get("container.run")
    registered = loaded()
    warning = asyncio.run(tool.approval_warning({"command": "true"}))
    called = loaded()
    asyncio.run(context.close())
    print(json.dumps({
        "description": tool.description,
        "runner": type(toolbox.runners["docker"]).__name__,
        "problems": toolbox.problems + host.problems,
        "registered": registered,
        "warning": warning,
        "called": called,
    }))
    """
)


def test_registration_loads_no_sandbox_and_the_first_call_makes_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert "Images: debian:bookworm-slim, alpine:3" in found["description"]
    assert "time limit: 20 s" in found["description"]
    assert found["runner"] == "DockerSkillRunner"
    assert found["problems"] == []
    assert found["registered"] == []
    assert found["warning"] is None
    assert found["called"] == ["openpista_docker.sandbox", "openpista.worker_service"]
