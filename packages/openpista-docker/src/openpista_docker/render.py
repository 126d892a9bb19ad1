"""How a finished task reads to the LLM: warnings, status, output, files and worker report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista.models import Attachment
from openpista.tools import ToolError, format_result
from openpista_docker.layout import OUT_DIR

if TYPE_CHECKING:
    from openpista_docker.sandbox import TaskResult
    from openpista_docker.settings import SandboxLimits


def check_memory(result: TaskResult, limits: SandboxLimits, max_chars: int) -> None:
    """Raise :class:`ToolError` when the kernel killed the task for using too much memory."""
    if result.oom_killed:
        raise ToolError(
            f"the container ran out of memory (limit {limits.memory_mb} MB) and was killed; "
            "raise memory_mb or make the task use less\n"
            + format_result(result.process, limits.timeout, max_chars)
        )


def render(result: TaskResult, limits: SandboxLimits, max_chars: int) -> str:
    """The task's text: warnings first, then what :func:`format_result` shows for
    ``system.run``, the files left in ``/out`` and the worker's report."""
    sections = list(result.warnings)
    if result.process.timed_out and result.mode == "docker":
        sections.append(f"time limit of {limits.timeout:g} s reached: the container was killed")
    sections.append(format_result(result.process, limits.timeout, max_chars))
    return "\n".join([*sections, *collected_sections(result)])


def collected_sections(result: TaskResult) -> list[str]:
    """What came back besides the output: the files of ``/out`` and the worker's report."""
    return [section for section in (files_section(result), report_section(result)) if section]


def report_section(result: TaskResult) -> str:
    """``--- worker report ---`` with what the worker sent, or ``""`` when it sent nothing."""
    report = result.report
    if report is None:
        return ""
    code = f", exit code {report.exit_code}" if report.exit_code is not None else ""
    return f"--- worker report (status {report.status}{code}) ---\n{report.output}"


def files_section(result: TaskResult) -> str:
    """``--- files in /out ---`` with one line per file, or ``""`` when there are none."""
    if not result.files and not result.files_omitted:
        return ""
    lines = [f"--- files in {OUT_DIR} ---"]
    for item in result.files:
        how = "attached" if item.attachment is not None else "too large to attach"
        lines.append(f"{item.name} ({item.size:,} bytes, {how})")
    if result.files_omitted:
        lines.append(f"(and {result.files_omitted} more files, not listed)")
    return "\n".join(lines)


def attachments(result: TaskResult) -> list[Attachment]:
    """The files of ``/out`` small enough to attach, then those of the worker's report."""
    found = [item.attachment for item in result.files if item.attachment is not None]
    if result.report is not None:
        found.extend(result.report.attachments)
    return found
