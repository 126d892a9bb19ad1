"""Options of the Docker sandbox: ``[tools.docker]``, overridden per skill in ``SKILL.md``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openpista import PluginSettings
from openpista.tools import ToolError

if TYPE_CHECKING:
    from openpista.skills import Skill

DEFAULT_IMAGE = "debian:bookworm-slim"


class SandboxLimits(BaseModel):
    """What one container gets; a skill's front matter may tighten every field."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(default=DEFAULT_IMAGE, min_length=1)
    timeout: float = Field(default=60.0, gt=0)
    cpus: float = Field(default=1.0, gt=0)
    memory_mb: int = Field(default=512, ge=6)
    pids_limit: int = Field(default=256, ge=1)
    network: str = "none"
    user: str = "65534:65534"
    read_only_root: bool = True
    tmpfs_mb: int = Field(default=64, ge=1)
    workspace: Literal["ro", "rw", "none"] = "ro"


class DockerSettings(SandboxLimits, PluginSettings):
    """``[tools.docker]``: the ``container.run`` tool and the runner of ``mode: docker`` skills."""

    section: ClassVar[str] = "tools.docker"

    enabled: bool = True
    docker_host: str | None = None
    fallback: Literal["subprocess", "refuse"] = "refuse"
    pull: bool = True
    images: list[str] = []
    """Images ``container.run`` may be asked for besides :attr:`image` (literal names)."""
    max_output_chars: int = Field(default=10_000, ge=100)
    max_files: int = Field(default=20, ge=0)
    max_attachment_bytes: int = Field(default=5_000_000, ge=0)
    max_report_bytes: int = Field(default=8_000_000, ge=1024)

    def allowed_images(self) -> list[str]:
        """The images the LLM may pick for ``container.run``: the default one first."""
        return [self.image, *(name for name in self.images if name != self.image)]

    def limits(self) -> SandboxLimits:
        """The defaults every container starts from."""
        return SandboxLimits.model_validate(
            self.model_dump(include=set(SandboxLimits.model_fields))
        )


_CAPPED = ("timeout", "cpus", "memory_mb", "pids_limit", "tmpfs_mb")
_WORKSPACE_ACCESS = {"none": 0, "ro": 1, "rw": 2}


def limits_for_skill(skill: Skill, settings: DockerSettings) -> SandboxLimits:
    """The limits of ``skill``: its front matter's keys (``image``, ``memory_mb``...) over the
    ``[tools.docker]`` defaults, which are ceilings: a larger number is cut to the
    configured one, and a wider network, another user, a writable root or a wider workspace
    than configured is refused. A bad or refused value raises :class:`ToolError` naming the
    key (and the option that would allow it)."""
    overrides = {k: v for k, v in skill.metadata.items() if k in SandboxLimits.model_fields}
    configured = settings.limits()
    try:
        asked = SandboxLimits.model_validate({**configured.model_dump(), **overrides})
    except ValidationError as exc:
        raise ToolError(
            f"skill {skill.name}: invalid SKILL.md front matter: {_problems(exc)}"
        ) from None
    wider = _wider_than(asked, configured)
    if wider:
        raise ToolError(
            f"skill {skill.name}: its SKILL.md front matter asks for more than "
            f"[tools.docker] allows: {'; '.join(wider)} (a skill may only tighten the "
            "configured limits; change [tools.docker] to allow it)"
        )
    capped = {key: min(getattr(asked, key), getattr(configured, key)) for key in _CAPPED}
    return asked.model_copy(update=capped)


def _wider_than(asked: SandboxLimits, configured: SandboxLimits) -> list[str]:
    """What ``asked`` opens beyond ``configured`` (numbers excepted: they are cut)."""
    wider = []
    if asked.network not in (configured.network, "none"):
        wider.append(f"network {asked.network!r} (configured: {configured.network!r})")
    if asked.user != configured.user:
        wider.append(f"user {asked.user!r} (configured: {configured.user!r})")
    if configured.read_only_root and not asked.read_only_root:
        wider.append("read_only_root false (configured: true)")
    if _WORKSPACE_ACCESS[asked.workspace] > _WORKSPACE_ACCESS[configured.workspace]:
        wider.append(f"workspace {asked.workspace!r} (configured: {configured.workspace!r})")
    return wider


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )
