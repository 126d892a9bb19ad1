"""What a skill is, and the contract of the runners that execute one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Skill:
    """A folder with a ``SKILL.md``: its front matter, its text and what it runs.

    ``entry`` is the executable part (``run.sh`` or ``main.py``) or ``None`` for a skill
    that only adds context to the system prompt. ``mode`` names the :class:`SkillRunner`
    that executes it (``subprocess`` in core; ``docker`` and ``wasm`` from plugins).
    """

    name: str
    description: str
    path: Path
    body: str = ""
    mode: str = "subprocess"
    entry: Path | None = None
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}, "additionalProperties": True}
    )
    metadata: dict[str, Any] = field(default_factory=dict)


class SkillRunner(Protocol):
    """Executes a runnable skill in one execution mode.

    ``run`` receives the validated arguments and a timeout in seconds, and returns the
    skill's output text. A failure (non-zero exit, timeout) raises
    :class:`openpista.tools.base.ToolError` carrying what the skill printed to stderr.

    A runner may also define ``async def approval_warning(self, skill) -> str | None``: what
    an approval request for the skill's tool must warn about (the docker runner: that the
    skill would run unsandboxed on the host); see
    :attr:`openpista.tools.base.Tool.approval_warning`.
    """

    # The runner enforces the timeout on its own process, hence the parameter.
    async def run(
        self,
        skill: Skill,
        arguments: dict[str, Any],
        timeout: float,  # noqa: ASYNC109
    ) -> str: ...
