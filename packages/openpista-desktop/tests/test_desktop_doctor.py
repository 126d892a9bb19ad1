"""``openpista doctor``'s display line, from the desktop plugin's ``doctor_checks`` hook:
an X server answering (a real Xvfb) is a ✓, none is a ✗ saying how to start Xvfb."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from openpista.config import Settings
from openpista.doctor import DoctorCheck, Finding
from openpista.plugin_context import PluginContext
from openpista_desktop import plugin

from .test_desktop_session import unused_display_number


def checks(table: dict[str, Any], monkeypatch: pytest.MonkeyPatch, **env: str) -> list[DoctorCheck]:
    """What the plugin registers for ``[tools.desktop]`` = ``table`` in environment ``env``."""
    monkeypatch.delenv("DISPLAY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found: list[DoctorCheck] = []
    config = Settings.model_validate({"tools": {"desktop": table}})
    plugin.doctor_checks(found.append, PluginContext(config))
    return found


def run(check: DoctorCheck) -> Finding:
    async def probe() -> Finding:
        return await check.run()

    return asyncio.run(probe())


def test_an_answering_x_server_is_a_tick(display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (configured,) = checks({"display": display}, monkeypatch, DISPLAY=":0")
    (from_env,) = checks({}, monkeypatch, DISPLAY=display)

    assert configured.name == "display"
    assert run(configured) == Finding(True, f"an X server answers at {display}")
    assert run(from_env) == Finding(True, f"an X server answers at {display}")


def test_a_display_nobody_serves_says_how_to_start_xvfb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unused = f":{unused_display_number()}"
    xvfb = tmp_path / "Xvfb"
    xvfb.write_text("#!/bin/sh\n")
    xvfb.chmod(0o755)

    (installed,) = checks({}, monkeypatch, DISPLAY=unused, PATH=str(tmp_path))
    found = run(installed)
    (absent,) = checks({"display": "localhost:x"}, monkeypatch, PATH=str(tmp_path / "none"))

    assert found == Finding(
        False,
        f"no X server answers at {unused}",
        f"start `Xvfb :99` and set DISPLAY=:99 (or [tools.desktop] display); Xvfb is {xvfb}",
    )
    assert run(absent) == Finding(
        False,
        "'localhost:x' is not an X display name (like :0 or localhost:10.0)",
        "install xvfb, then start `Xvfb :99` and set DISPLAY=:99 (or [tools.desktop] display)",
    )
    assert installed.unreachable_fix.startswith("start `Xvfb :99`")


def test_no_display_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    (check,) = checks({}, monkeypatch)

    found = run(check)

    assert found.ok is False
    assert found.detail == "no X display ($DISPLAY is unset and [tools.desktop] display is not set)"


def test_nothing_is_checked_for_a_disabled_or_invalid_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert checks({"enabled": False}, monkeypatch, DISPLAY=":0") == []
    assert checks({"max_width": -1}, monkeypatch, DISPLAY=":0") == []
