"""Skills: folders with a SKILL.md that add context and, optionally, a runnable tool.

The public API for skill-runner plugins is importable from here (lazily): :class:`Skill`,
the :class:`SkillRunner` protocol, :func:`skill_output` (what a run gives the LLM: its
stdout, or a :class:`~openpista.tools.ToolError` for a timeout or a failure, with its
stderr) and :data:`MAX_ARGV_JSON_BYTES` (larger arguments travel on stdin only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista._lazy import lazy_exports

if TYPE_CHECKING:
    from openpista.skills.base import Skill, SkillRunner
    from openpista.skills.subprocess_runner import MAX_ARGV_JSON_BYTES, skill_output

_EXPORTS = {
    "Skill": "openpista.skills.base",
    "SkillRunner": "openpista.skills.base",
    "MAX_ARGV_JSON_BYTES": "openpista.skills.subprocess_runner",
    "skill_output": "openpista.skills.subprocess_runner",
}
__all__ = [
    "MAX_ARGV_JSON_BYTES",
    "Skill",
    "SkillRunner",
    "skill_output",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
