"""Every plugin package is laid out the same way, so that a newcomer finds things at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = sorted(
    path.parent for path in REPO_ROOT.glob("packages/openpista-*/src/openpista_*/plugin.py")
)


def test_the_plugin_packages_are_found() -> None:
    names = {package.name for package in PLUGIN_PACKAGES}
    assert {"openpista_web", "openpista_telegram", "openpista_docker", "openpista_wasm"} <= names


@pytest.mark.parametrize("package", PLUGIN_PACKAGES, ids=lambda path: path.name)
def test_one_layout_settings_py_and_hookimpl_from_openpista(package: Path) -> None:
    plugin = (package / "plugin.py").read_text()
    assert "from openpista import hookimpl" in plugin
    assert "openpista.hookspecs" not in plugin
    assert not (package / "config.py").exists(), "options live in settings.py"
    settings = (package / "settings.py").read_text()
    assert re.search(r"^class \w+Settings\(", settings, re.M), "settings.py has <Name>Settings"
