"""The ``system.run`` tool: run a shell command and show the LLM what happened.

A command that exits non-zero or times out is an error result (its text still shows the exit
code and the output). The LLM's ``timeout`` may only shorten ``[tools.system_run] timeout``:
a longer one is clamped to it, and the result says so. The command gets
:func:`~openpista.tools.process.tool_environment`, not openpista's own secrets.
"""

# No ``from __future__ import annotations`` here: the tool's parameter annotations refer
# to the factory's local ``settings`` and must be evaluated where they are written.

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from openpista.config import SystemRunSettings
from openpista.tools.base import Tool, ToolError
from openpista.tools.process import CapturedText, ProcessResult, run_process, tool_environment
from openpista.tools.registry import tool

NAME = "system.run"
DESCRIPTION = (
    "Run a shell command on the user's computer and return its exit code, stdout and "
    "stderr. The command runs non-interactively with `{shell} -c` (pipes, redirections "
    "and `&&` work; nothing can be typed into it). Long output is cut in the middle. "
    "The command and everything it started is killed when the timeout expires; start "
    "long-lived background programs with `setsid nohup ... > file 2>&1 &`."
)


def _huge_to_inf(value: Any) -> Any:
    """An integer too large for a float is simply a very long timeout (it gets clamped)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return math.inf
    return value


def make_system_run_tool(
    settings: SystemRunSettings, workspace: Path | None = None, env_passthrough: Iterable[str] = ()
) -> Tool:
    """Build ``system.run`` with the shell, timeout and output limit of ``settings``.

    When ``workspace`` is an existing directory it is the default working directory and
    the base of relative ``cwd`` arguments; otherwise the daemon's own directory is.
    ``env_passthrough`` names the variables the command gets besides the safe ones
    (``[tools] env_passthrough``).
    """
    passthrough = tuple(env_passthrough)

    @tool(NAME, description=DESCRIPTION.format(shell=settings.shell))
    async def system_run(
        command: Annotated[str, Field(description="The shell command line to run.")],
        # The LLM-facing argument; enforced by run_process, which kills the group.
        timeout: Annotated[  # noqa: ASYNC109
            float | None,
            BeforeValidator(_huge_to_inf),
            Field(
                gt=0,
                description=(
                    f"Seconds before the command is killed (default and maximum "
                    f"{settings.timeout:g})."
                ),
            ),
        ] = None,
        cwd: Annotated[
            str | None,
            Field(description="Working directory (default: the agent's workspace)."),
        ] = None,
    ) -> str:
        directory = _working_directory(cwd, workspace)
        clamped = timeout is not None and timeout > settings.timeout
        seconds = settings.timeout if timeout is None or clamped else timeout
        try:
            result = await run_process(
                [settings.shell, "-c", command],
                cwd=directory,
                env=tool_environment(passthrough),
                timeout=seconds,
                max_chars=settings.max_output_chars,
            )
        except OSError as exc:
            raise ToolError(f"cannot start {settings.shell}: {exc.strerror or exc}") from None
        text = format_result(result, seconds, settings.max_output_chars)
        if clamped:
            text += f"\nnote: timeout clamped to {seconds:g} s (the configured limit)"
        if result.timed_out or result.exit_code != 0:
            raise ToolError(text)
        return text

    return system_run


def _working_directory(cwd: str | None, workspace: Path | None) -> Path | None:
    base = workspace if workspace is not None and workspace.is_dir() else None
    if cwd is None:
        return base
    path = Path(cwd).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists():
        raise ToolError(f"working directory {cwd} does not exist")
    if not path.is_dir():
        raise ToolError(f"working directory {cwd} is not a directory")
    return path


def format_result(result: ProcessResult, timeout: float, max_chars: int) -> str:
    """The text the LLM sees: status line, then stdout and stderr sharing ``max_chars``."""
    if result.timed_out:
        status = f"timed out after {timeout:g} s; process group killed"
    else:
        status = f"exit code: {result.exit_code}"
    stdout_budget, stderr_budget = _share(result.stdout.kept, result.stderr.kept, max_chars)
    sections = [status]
    for label, captured, budget in (
        ("stdout", result.stdout, stdout_budget),
        ("stderr", result.stderr, stderr_budget),
    ):
        if not captured.is_empty:
            sections.append(f"--- {label} ---\n{_block(captured.clipped(budget))}")
    if len(sections) == 1:
        sections.append("(no output)")
    return "\n".join(sections)


def _block(captured: CapturedText) -> str:
    return captured.render().removesuffix("\n")


def _share(first: int, second: int, budget: int) -> tuple[int, int]:
    """Split ``budget`` between two outputs; a short one leaves its unused part to the other."""
    half = budget // 2
    if first <= half:
        return first, budget - first
    if second <= budget - half:
        return budget - second, second
    return half, budget - half
