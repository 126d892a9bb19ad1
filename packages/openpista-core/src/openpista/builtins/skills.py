"""Built-in plugin: the ``subprocess`` skill runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.skills.base import SkillRunner


@hookimpl
def register_skill_runners(register: Callable[[str, SkillRunner], None], config: Settings) -> None:
    """Register the runner of ``mode: subprocess`` skills (the default mode)."""
    from openpista.skills.subprocess_runner import SubprocessSkillRunner

    register("subprocess", SubprocessSkillRunner(env_passthrough=config.tools.env_passthrough))
