"""The ``docker`` skill runner: a skill's entry runs in a fresh container of its ``image:``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista.skills import MAX_ARGV_JSON_BYTES, Skill, skill_output
from openpista.tools import ToolError, current_turn
from openpista_docker.render import check_memory, collected_sections
from openpista_docker.settings import limits_for_skill

if TYPE_CHECKING:
    from openpista_docker.sandbox import DockerSandbox

SKILL_DIR = "/skill"


class DockerSkillRunner:
    """Runs ``mode: docker`` skills (and skills naming an ``image:``).

    The skill folder is mounted read-only at ``/skill``, which is the working directory;
    ``run.sh`` runs with ``sh``, ``main.py`` with ``python3``, any other entry directly. The
    arguments, as one JSON object, are the first command-line argument and the whole of
    stdin, as for subprocess skills (argument ``-`` when they exceed
    :data:`~openpista.skills.subprocess_runner.MAX_ARGV_JSON_BYTES`: stdin only). The front
    matter may tighten every limit of ``[tools.docker]`` (``image``, ``timeout``,
    ``memory_mb``, ``cpus``, ``pids_limit``, ``network``, ``user``, ``read_only_root``,
    ``tmpfs_mb``, ``workspace``), never loosen one (:func:`limits_for_skill`); ``timeout`` is
    also cut to the ``[skills] timeout``. Stdout is the result.
    """

    def __init__(self, sandbox: Callable[[], DockerSandbox]) -> None:
        """Skills run in ``sandbox()``, first called (and the sandbox's modules loaded) when
        a skill is about to run."""
        self._sandbox = sandbox

    async def approval_warning(self, skill: Skill) -> str | None:
        """That ``skill`` would run UNSANDBOXED on the host (see the sandbox), or ``None``."""
        return await self._sandbox().unsandboxed_warning()

    # ``timeout`` belongs to the SkillRunner contract; the sandbox enforces it.
    async def run(self, skill: Skill, arguments: dict[str, Any], timeout: float) -> str:  # noqa: ASYNC109
        """Run ``skill`` in a container; a failure, OOM or timeout raises :class:`ToolError`."""
        if skill.entry is None:
            raise ToolError(f"skill {skill.name} has no run.sh or main.py to run")
        from openpista_docker.sandbox import Mount, TaskSpec

        sandbox = self._sandbox()
        limits = limits_for_skill(skill, sandbox.settings)
        limits = limits.model_copy(update={"timeout": min(limits.timeout, timeout)})
        payload = json.dumps(arguments, ensure_ascii=False)
        encoded = payload.encode()
        argument = payload if len(encoded) <= MAX_ARGV_JSON_BYTES else "-"
        relative = skill.entry.resolve().relative_to(skill.path.resolve()).as_posix()
        container_entry = f"{SKILL_DIR}/{relative}"
        spec = TaskSpec(
            argv=[*_interpreter(skill.entry.suffix, "sh", "python3"), container_entry, argument],
            limits=limits,
            workdir=SKILL_DIR,
            env={"OPENPISTA_SKILL_DIR": SKILL_DIR},
            mounts=(Mount(skill.path.resolve(), SKILL_DIR),),
            host_argv=[
                *_interpreter(skill.entry.suffix, "bash", sys.executable),
                str(skill.entry),
                argument,
            ],
            host_cwd=skill.path,
            host_env={"OPENPISTA_SKILL_DIR": str(skill.path)},
            stdin=encoded,
        )
        turn = current_turn()
        result = await sandbox.run(
            spec,
            turn.session_id if turn else f"skill.{skill.name}",
            turn.channel_id if turn else "",
        )
        max_chars = sandbox.settings.max_output_chars
        check_memory(result, limits, max_chars)
        output = skill_output(skill.name, result.process, limits.timeout)
        return "\n".join([*result.warnings, output, *collected_sections(result)])


def _interpreter(suffix: str, shell: str, python: str) -> list[str]:
    if suffix == ".sh":
        return [shell]
    if suffix == ".py":
        return [python]
    return []
