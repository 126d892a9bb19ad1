"""Fixtures for the cross-package and end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from openpista_testing.cli import Cli
from openpista_testing.emulator import LlmEmulator


@pytest.fixture
def make_cli(tmp_path: Path) -> Callable[..., Cli]:
    """Builds an isolated CLI; pass an emulator (or None) and extra ``[agent]`` options."""

    def make(emulator: LlmEmulator | None, agent_options: str = "") -> Cli:
        return Cli.isolated(tmp_path / "home", emulator, agent_options)

    return make


@pytest.fixture
def cli(make_cli: Callable[..., Cli], llm_emulator: LlmEmulator) -> Cli:
    """The CLI, configured to talk to this test's LLM emulator."""
    return make_cli(llm_emulator)
