"""Limits of WASM skills: ``[skills.wasm]`` defaults, overridden per skill in ``SKILL.md``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from openpista import PluginSettings, home_dir
from openpista.skills import Skill
from openpista.tools import ToolError

MAX_MEMORY_MB = 4096
"""wasm32 linear memory cannot exceed 4 GiB."""


class WasmSettings(PluginSettings):
    """``[skills.wasm]``: defaults for every ``mode: wasm`` skill."""

    section: ClassVar[str] = "skills.wasm"

    timeout: float = Field(default=30.0, gt=0)
    memory_mb: int = Field(default=64, ge=1, le=MAX_MEMORY_MB)
    max_output_chars: int = Field(default=10_000, ge=100)
    max_stdout_bytes: int = Field(default=1_048_576, ge=1024)
    cache: bool = True
    cache_dir: Path | None = None

    def resolved_cache_dir(self) -> Path:
        """Where compiled modules are kept: ``cache_dir`` or ``home_dir()/wasm/cache``."""
        return (self.cache_dir or home_dir() / "wasm" / "cache").expanduser()


@dataclass(frozen=True)
class Limits:
    """The bounds of one run: wall-clock seconds and linear-memory bytes."""

    timeout: float
    memory_bytes: int

    @property
    def memory_mb(self) -> float:
        """The memory cap in MiB."""
        return self.memory_bytes / 2**20


def limits_for(skill: Skill, settings: WasmSettings, ceiling: float) -> Limits:
    """The limits of ``skill``: its front matter's ``timeout``/``memory_mb``, else the defaults.

    ``ceiling`` is the ``[skills] timeout`` every skill obeys; a longer ``timeout`` is cut
    to it. A bad front-matter value raises :class:`ToolError` naming the key.
    """
    timeout = _number(skill, "timeout", settings.timeout, low=0.0, high=None)
    memory_mb = _number(skill, "memory_mb", settings.memory_mb, low=1, high=MAX_MEMORY_MB)
    return Limits(timeout=min(timeout, ceiling), memory_bytes=int(memory_mb * 2**20))


def _number(skill: Skill, key: str, default: float, low: float, high: float | None) -> float:
    value = skill.metadata.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"skill {skill.name}: `{key}` in SKILL.md must be a number, not {value!r}")
    if value <= low or (high is not None and value > high):
        bound = f"above {low:g}" + (f" and at most {high:g}" if high is not None else "")
        raise ToolError(f"skill {skill.name}: `{key}` in SKILL.md must be {bound}, not {value!r}")
    return float(value)
