"""The openpista plugin module of openpista-docker (entry point ``docker``).

Registers the ``container.run`` tool and the ``docker`` skill runner (both on one
:class:`~openpista_docker.sandbox.DockerSandbox` per runtime, shared through the
:class:`~openpista.PluginContext`), removes orphan containers and task directories when the
daemon starts, and stops the worker endpoint when the runtime closes.
Registering loads only the settings and the tool's schema: the sandbox (and its worker
service) is made when a task first runs, the docker SDK, starlette and uvicorn imported then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista import PluginContext, PluginSettings, Settings, SkillRunner, Tool
    from openpista_docker.sandbox import DockerSandbox

log = logging.getLogger(__name__)


def make_sandbox(context: PluginContext) -> DockerSandbox:
    """The runtime's sandbox (``context.shared(make_sandbox)``), closed with the runtime;
    raises ConfigError for bad ``[tools.docker]`` options."""
    from openpista_docker.sandbox import DockerSandbox
    from openpista_docker.settings import DockerSettings

    config = context.config
    sandbox = DockerSandbox(
        context.settings(DockerSettings),
        config.workspace,
        env_passthrough=config.tools.env_passthrough,
        database_url=config.database.url,
    )
    context.on_close(sandbox.close)
    return sandbox


def _enabled(config: Settings) -> bool:
    table: Any = (config.tools.model_extra or {}).get("docker") or {}
    return not isinstance(table, dict) or table.get("enabled", True) is not False


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_docker.settings import DockerSettings

    register(DockerSettings)


@hookimpl
def register_tools(register: Callable[[Tool], None], context: PluginContext) -> None:
    """Register ``container.run`` unless ``[tools.docker] enabled = false``."""
    if not _enabled(context.config):
        return
    from openpista_docker.settings import DockerSettings
    from openpista_docker.tool import make_container_run_tool

    settings = context.settings(DockerSettings)
    register(make_container_run_tool(settings, lambda: context.shared(make_sandbox)))


@hookimpl
def register_skill_runners(
    register: Callable[[str, SkillRunner], None], context: PluginContext
) -> None:
    """Register the runner of ``mode: docker`` skills (and of skills naming an ``image:``)."""
    if not _enabled(context.config):
        return
    from openpista_docker.runner import DockerSkillRunner
    from openpista_docker.settings import DockerSettings

    context.settings(DockerSettings)  # a bad [tools.docker] table is reported now
    register("docker", DockerSkillRunner(lambda: context.shared(make_sandbox)))


@hookimpl
async def daemon_started(context: PluginContext) -> None:
    """Remove the containers and host directories a crashed openpista left behind."""
    if not _enabled(context.config):
        return
    import asyncio

    sandbox = context.shared(make_sandbox)
    await asyncio.to_thread(sandbox.remove_stale_dirs)
    removed = await sandbox.remove_orphans()
    if removed:
        log.warning("removed %d orphan container(s): %s", len(removed), ", ".join(removed))
