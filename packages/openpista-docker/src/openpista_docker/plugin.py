"""The openpista plugin module of openpista-docker (entry point ``docker``).

Registers the ``container.run`` tool and the ``docker`` skill runner (both on one
:class:`~openpista_docker.sandbox.DockerSandbox` per configuration), removes orphan
containers and task directories when the daemon starts, and stops the worker endpoint when
openpista closes.
The docker SDK, starlette and uvicorn are imported only when a task runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista.hookspecs import hookimpl

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.skills.base import SkillRunner
    from openpista.tools.base import Tool
    from openpista_docker.sandbox import DockerSandbox

log = logging.getLogger(__name__)

_sandboxes: dict[int, DockerSandbox] = {}
"""One sandbox per configuration object, shared by its tool, runner and hooks."""


def sandbox_for(config: Settings) -> DockerSandbox:
    """The sandbox of ``config`` (made on first use); raises ConfigError for bad options."""
    from openpista_docker.sandbox import DockerSandbox
    from openpista_docker.settings import DockerSettings

    sandbox = _sandboxes.get(id(config))
    if sandbox is None:
        sandbox = DockerSandbox(
            DockerSettings.from_config(config),
            config.workspace,
            env_passthrough=config.tools.env_passthrough,
        )
        _sandboxes[id(config)] = sandbox
    return sandbox


def _enabled(config: Settings) -> bool:
    table: Any = (config.tools.model_extra or {}).get("docker") or {}
    return not isinstance(table, dict) or table.get("enabled", True) is not False


@hookimpl
def register_tools(register: Callable[[Tool], None], config: Settings) -> None:
    """Register ``container.run`` unless ``[tools.docker] enabled = false``."""
    if not _enabled(config):
        return
    from openpista_docker.tool import make_container_run_tool

    register(make_container_run_tool(sandbox_for(config)))


@hookimpl
def register_skill_runners(register: Callable[[str, SkillRunner], None], config: Settings) -> None:
    """Register the runner of ``mode: docker`` skills (and of skills naming an ``image:``)."""
    if not _enabled(config):
        return
    from openpista_docker.runner import DockerSkillRunner

    register("docker", DockerSkillRunner(sandbox_for(config)))


@hookimpl
async def daemon_started(config: Settings, services: dict[str, Any]) -> None:
    """Remove the containers and host directories a crashed openpista left behind."""
    if not _enabled(config):
        return
    import asyncio

    sandbox = sandbox_for(config)
    await asyncio.to_thread(sandbox.remove_stale_dirs)
    removed = await sandbox.remove_orphans()
    if removed:
        log.warning("removed %d orphan container(s): %s", len(removed), ", ".join(removed))


@hookimpl
async def runtime_closing(config: Settings) -> None:
    """Stop the worker endpoint and close the engine connection."""
    sandbox = _sandboxes.pop(id(config), None)
    if sandbox is not None:
        await sandbox.close()
