"""docs/security.md keeps up with the code: every setting that opens a port has its row in
the table of network surfaces, and every test file the page names exists."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from openpista.config import Settings
from openpista.plugins import PluginHost

REPO = Path(__file__).resolve().parents[1]
PAGE = (REPO / "docs" / "security.md").read_text()
SURFACES = PAGE.split("## Network surfaces", 1)[1].split("\n## ", 1)[0]


def listening(model: type[BaseModel]) -> bool:
    """Whether a settings model has an address to listen on (``port``, ``webhook_port``...)."""
    return any(name == "port" or name.endswith("_port") for name in model.model_fields)


def core_sections() -> list[str]:
    """The ``[section]`` of every core settings table that listens on a port."""
    return [
        name
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type)
        and issubclass(field.annotation, BaseModel)
        and listening(field.annotation)
    ]


def test_every_listening_setting_has_a_row_in_the_surfaces_table() -> None:
    plugins = [
        model.section
        for _, model in PluginHost.load().collect("register_settings", str)
        if listening(model)
    ]
    sections = [*core_sections(), *plugins]
    # The check finds what it is about: the core endpoints and the channels' listeners.
    assert {"workers", "metrics", "channels.web", "channels.slack"} <= set(sections)
    rows = [line for line in SURFACES.splitlines() if line.startswith("| ")]
    missing = [s for s in sections if not any(f"`[{s}]" in row for row in rows)]
    assert missing == []


def test_every_test_file_the_page_names_exists() -> None:
    named = set(re.findall(r"`((?:packages/[\w-]+/)?(?:tests/)?test_\w+\.py)`", PAGE))
    assert len(named) > 10
    known = {p.name for p in REPO.glob("packages/*/tests/test_*.py")}
    absent = sorted(
        name for name in named if not ((REPO / name).is_file() if "/" in name else name in known)
    )
    assert absent == []
