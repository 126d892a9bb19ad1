"""Find the skills of a workspace, describe them to the LLM and offer the runnable ones as tools.

A skill is a folder holding a ``SKILL.md``: optional YAML front matter between ``---``
lines, then markdown instructions for the LLM. ``run.sh`` or ``main.py`` next to it (or the
file named by an ``entry`` key) makes the skill callable as the tool ``skill.<name>``.

Front matter keys: ``name`` (default: the folder name), ``description``, ``mode`` (default
``subprocess``), ``parameters`` (JSON Schema of the arguments object), ``entry``; any other
key (``image``, ``memory``...) is kept in :attr:`Skill.metadata` for the runner.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openpista.skills.base import Skill, SkillRunner
from openpista.tools.base import Tool, ToolError
from openpista.tools.schema import object_schema, schema_validator

SKILL_FILE = "SKILL.md"
ENTRY_FILES = ("run.sh", "main.py", "main.wasm")
SKIPPED_DIRS = frozenset({".venv", "venv", "node_modules", "__pycache__"})
PLUGIN_FOR_MODE = {"docker": "openpista-docker", "wasm": "openpista-wasm"}
_KNOWN_KEYS = frozenset({"name", "description", "mode", "parameters", "entry"})
_ANY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}


@dataclass
class SkillScan:
    """What :meth:`SkillLoader.discover` found: the usable skills and what was wrong."""

    skills: list[Skill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class SkillProblem(Exception):
    """A ``SKILL.md`` that cannot be used; the message says what is wrong."""


class SkillLoader:
    """Finds every ``SKILL.md`` under ``workspace`` (hidden folders and ``.venv`` skipped)."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace.expanduser()

    def discover(self) -> SkillScan:
        """Load all skills; a broken one is reported in ``problems`` and the others load."""
        scan = SkillScan()
        seen: dict[str, Path] = {}
        for skill_file in self._skill_files():
            try:
                skill = load_skill(skill_file)
            except SkillProblem as exc:
                scan.problems.append(f"{skill_file}: {exc}; skill skipped")
                continue
            first = seen.get(skill.name)
            if first is not None:
                scan.problems.append(
                    f"{skill_file}: skill name {skill.name!r} is already used by {first}; "
                    "skill skipped (give one of them another `name:`)"
                )
                continue
            seen[skill.name] = skill_file
            scan.skills.append(skill)
        return scan

    def _skill_files(self) -> Iterator[Path]:
        if not self.workspace.is_dir():
            return
        visited: set[tuple[int, int]] = set()
        # followlinks=True so a symlinked skill folder works; ``visited`` breaks link loops.
        for root, dirs, files in os.walk(self.workspace, followlinks=True):
            try:
                stat = os.stat(root)
            except OSError:
                dirs.clear()
                continue
            if (stat.st_dev, stat.st_ino) in visited:
                dirs.clear()
                continue
            visited.add((stat.st_dev, stat.st_ino))
            # Sorted, so that which of two same-named skills wins does not depend on the disk.
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
            if SKILL_FILE in dirs:
                # A folder named SKILL.md is a mistake to report, not a place to look into.
                dirs.remove(SKILL_FILE)
                yield Path(root) / SKILL_FILE
            elif SKILL_FILE in files:
                yield Path(root) / SKILL_FILE


def load_skill(skill_file: Path) -> Skill:
    """Read one ``SKILL.md``; raises :class:`SkillProblem` saying what is wrong with it."""
    try:
        text = skill_file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SkillProblem(f"not UTF-8 text (byte {exc.start})") from None
    except IsADirectoryError:
        raise SkillProblem("is a directory, not a file") from None
    except OSError as exc:
        raise SkillProblem(f"cannot read: {exc.strerror or exc}") from None
    front, body = _split_front_matter(text)
    folder = skill_file.parent
    name = _text_field(front, "name", folder.name)
    if not name:
        raise SkillProblem("`name` is empty")
    description = _text_field(front, "description", "") or _first_paragraph(body)
    entry = _entry(front, folder)
    # Unless it says otherwise, a skill naming a container image runs in the Docker sandbox
    # and a WebAssembly entry runs in the WASM sandbox.
    if front.get("image"):
        default_mode = "docker"
    elif entry is not None and entry.suffix == ".wasm":
        default_mode = "wasm"
    else:
        default_mode = "subprocess"
    mode = _text_field(front, "mode", default_mode)
    return Skill(
        name=name,
        description=description,
        path=folder,
        body=body.strip(),
        mode=mode,
        entry=entry,
        parameters=_parameters(front),
        metadata={key: value for key, value in front.items() if key not in _KNOWN_KEYS},
    )


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    index = next((i for i, line in enumerate(lines) if i and line.strip() in ("---", "...")), 0)
    if not index:
        raise SkillProblem("front matter opened with `---` is never closed")
    source = "".join(lines[1:index])
    import yaml  # type: ignore[import-untyped,unused-ignore]  # only when a skill has one

    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise SkillProblem(f"front matter is not valid YAML: {_yaml_reason(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SkillProblem(
            f"front matter must be a mapping of `key: value` lines, not {_type_name(data)}"
        )
    return {str(key): value for key, value in data.items()}, "".join(lines[index + 1 :])


def _yaml_reason(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        # +2: the mark counts from 0 inside the front matter, which starts on line 2.
        return f"{problem} (line {mark.line + 2}, column {mark.column + 1})"
    return str(problem)


def _type_name(value: object) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


def _text_field(front: Mapping[str, Any], key: str, default: str) -> str:
    value = front.get(key)
    if value is None:
        return default
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise SkillProblem(f"`{key}` must be text, not {_type_name(value)}")
    return str(value).strip()


def _first_paragraph(body: str) -> str:
    """A default description: the first line of prose (headings skipped)."""
    for line in body.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped
    return ""


def _entry(front: Mapping[str, Any], folder: Path) -> Path | None:
    declared = front.get("entry")
    if declared is None:
        return next((folder / n for n in ENTRY_FILES if (folder / n).is_file()), None)
    if not isinstance(declared, str) or not declared.strip():
        raise SkillProblem("`entry` must be a file name inside the skill folder")
    entry = (folder / declared.strip()).resolve()
    if not entry.is_relative_to(folder.resolve()):
        raise SkillProblem(f"`entry` {declared!r} points outside the skill folder")
    if not entry.is_file():
        raise SkillProblem(f"`entry` {declared!r} does not exist")
    return entry


def _parameters(front: Mapping[str, Any]) -> dict[str, Any]:
    schema = front.get("parameters")
    if schema is None:
        return dict(_ANY_OBJECT)
    if not isinstance(schema, dict):
        raise SkillProblem(f"`parameters` must be a JSON Schema mapping, not {_type_name(schema)}")
    try:
        return object_schema(schema)
    except ValueError as exc:
        raise SkillProblem(str(exc)) from None


def system_prompt_context(skills: Sequence[Skill], max_body_chars: int = 2_000) -> str:
    """A system-prompt section listing ``skills``: what each does and how to use it.

    Each skill's instructions are included, cut to ``max_body_chars`` characters.
    Returns ``""`` when there are no skills.
    """
    if not skills:
        return ""
    parts = [
        "## Skills",
        "Skills are instructions and helpers found in the workspace. Call a runnable skill "
        "through its tool; follow the instructions of the others yourself.",
    ]
    for skill in skills:
        if skill.entry is not None:
            how = f"tool `skill.{skill.name}`"
        else:
            how = "instructions only, not a tool"
        heading = f"### {skill.name} ({how})"
        lines = [heading]
        if skill.description:
            lines.append(skill.description)
        body = skill.body
        if len(body) > max_body_chars:
            dropped = len(body) - max_body_chars
            body = f"{body[:max_body_chars].rstrip()}\n[... {dropped:,} characters omitted ...]"
        if body:
            lines.append(body)
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def skill_tools(
    skills: Sequence[Skill], runners: Mapping[str, SkillRunner], timeout: float
) -> list[Tool]:
    """One tool ``skill.<name>`` per runnable skill, run by the runner of the skill's mode.

    A skill whose mode has no runner still gets its tool: the call then fails with a
    :class:`ToolError` naming the plugin to install, which the LLM can relay to the user.
    """
    return [_skill_tool(skill, runners, timeout) for skill in skills if skill.entry is not None]


def _skill_tool(skill: Skill, runners: Mapping[str, SkillRunner], timeout: float) -> Tool:
    async def run_skill(**arguments: Any) -> str:
        runner = runners.get(skill.mode)
        if runner is None:
            raise ToolError(_missing_runner(skill, runners))
        return await runner.run(skill, arguments, timeout)

    async def warn(arguments: dict[str, Any]) -> str | None:
        check = getattr(runners.get(skill.mode), "approval_warning", None)
        return await check(skill) if check is not None else None

    return Tool(
        name=f"skill.{skill.name}",
        description=skill.description or f"Run the {skill.name} skill.",
        handler=run_skill,
        parameters=skill.parameters,
        validator=schema_validator(f"skill.{skill.name}", skill.parameters),
        approval_warning=warn,
    )


def _missing_runner(skill: Skill, runners: Mapping[str, SkillRunner]) -> str:
    available = ", ".join(sorted(runners)) or "none"
    message = (
        f"skill {skill.name} needs execution mode {skill.mode!r}, which no installed plugin "
        f"provides (available modes: {available})"
    )
    plugin = PLUGIN_FOR_MODE.get(skill.mode)
    if plugin is not None:
        message += f"; install the {plugin} plugin (pip install {plugin})"
    return message
