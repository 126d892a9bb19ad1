"""Documentation that must not drift from the code."""

from __future__ import annotations

from pathlib import Path

from openpista.plugins import HOOK_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_every_hook_has_a_section_in_the_plugin_guide() -> None:
    guide = (REPO_ROOT / "docs" / "plugins.md").read_text()
    missing = [hook for hook in sorted(HOOK_NAMES) if f"### {hook}\n" not in guide]
    assert not missing, f"document these hooks in docs/plugins.md: {missing}"


def test_readme_quick_start_has_the_two_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "## Quick start" in readme
    assert "scripts/install && .venv/bin/openpista start\n" in readme
    assert "\nscripts/test\n" in readme
    assert (REPO_ROOT / ".ci" / "run").read_text().rstrip().endswith("exec scripts/test")
