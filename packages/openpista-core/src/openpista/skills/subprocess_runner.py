"""The ``subprocess`` execution mode: run a skill's ``run.sh`` or ``main.py`` on the host."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from openpista.skills.base import Skill
from openpista.tools.base import ToolError
from openpista.tools.process import ProcessResult, run_process, tool_environment

MAX_ARGV_JSON_BYTES = 100_000
"""Larger arguments travel on stdin only (one argv string is capped at 128 KiB on Linux)."""

_STDERR_SHOWN_CHARS = 2_000


class SubprocessSkillRunner:
    """Runs a skill's entry as a child process of the daemon (no sandbox).

    ``run.sh`` runs with ``bash``, ``main.py`` with this Python interpreter, any other
    executable entry directly. The arguments, as one JSON object, are the first command-line
    argument and also the whole of stdin; when they exceed :data:`MAX_ARGV_JSON_BYTES` the
    argument is ``-`` and only stdin carries them. The working directory is the skill folder
    and ``OPENPISTA_SKILL_DIR`` names it. The environment is
    :func:`~openpista.tools.process.tool_environment` with ``env_passthrough``. Stdout is the
    result.
    """

    def __init__(
        self,
        max_output_chars: int = 10_000,
        kill_grace: float = 2.0,
        env_passthrough: Iterable[str] = (),
    ) -> None:
        self.max_output_chars = max_output_chars
        self.kill_grace = kill_grace
        self.env_passthrough = tuple(env_passthrough)

    # ``timeout`` belongs to the SkillRunner contract; run_process enforces it.
    async def run(self, skill: Skill, arguments: dict[str, Any], timeout: float) -> str:  # noqa: ASYNC109
        """Run ``skill`` with ``arguments``; a failure or timeout raises :class:`ToolError`."""
        if skill.entry is None:
            raise ToolError(f"skill {skill.name} has no run.sh or main.py to run")
        payload = json.dumps(arguments, ensure_ascii=False)
        encoded = payload.encode()
        argv_payload = payload if len(encoded) <= MAX_ARGV_JSON_BYTES else "-"
        env = {**tool_environment(self.env_passthrough), "OPENPISTA_SKILL_DIR": str(skill.path)}
        try:
            result = await run_process(
                [*_interpreter(skill), str(skill.entry), argv_payload],
                stdin=encoded,
                cwd=skill.path,
                env=env,
                timeout=timeout,
                max_chars=self.max_output_chars,
                kill_grace=self.kill_grace,
            )
        except OSError as exc:
            raise ToolError(f"skill {skill.name} cannot start: {exc.strerror or exc}") from None
        return skill_output(skill.name, result, timeout)


def skill_output(name: str, result: ProcessResult, timeout: float) -> str:
    """What a skill's run gives the LLM: its standard output, or a :class:`ToolError` for a
    timeout or a non-zero exit carrying (the start of) its standard error. Runners of other
    execution modes (docker) use it too."""
    stderr = result.stderr.clipped(_STDERR_SHOWN_CHARS).render().strip()
    if result.timed_out:
        raise ToolError(
            f"skill {name} timed out after {timeout:g} s and was killed"
            + (f"; stderr:\n{stderr}" if stderr else "")
        )
    if result.exit_code != 0:
        raise ToolError(
            f"skill {name} failed with exit code {result.exit_code}"
            + (f"; stderr:\n{stderr}" if stderr else " (nothing on stderr)")
        )
    return result.stdout.render().strip() or "(the skill printed nothing)"


def _interpreter(skill: Skill) -> list[str]:
    assert skill.entry is not None  # noqa: S101  an invariant for mypy, not a check
    if skill.entry.suffix == ".sh":
        return ["bash"]
    if skill.entry.suffix == ".py":
        return [sys.executable]
    return []
