"""Built-in plugin: core's own tools (``system.run``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.tools.base import Tool


@hookimpl
def register_tools(register: Callable[[Tool], None], config: Settings) -> None:
    """Register ``system.run`` unless ``[tools.system_run] enabled = false``."""
    settings = config.tools.system_run
    if not settings.enabled:
        return
    from openpista.tools.system_run import make_system_run_tool

    register(
        make_system_run_tool(
            settings, workspace=config.workspace, env_passthrough=config.tools.env_passthrough
        )
    )
