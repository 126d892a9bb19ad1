"""Built-in plugin: the ``memory.*`` tools (search and notes of the asking person)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.plugin_context import PluginContext
    from openpista.tools.base import Tool


@hookimpl
def register_tools(
    register: Callable[[Tool], None], config: Settings, context: PluginContext
) -> None:
    """Register ``memory.search``, ``memory.remember`` and ``memory.forget``."""
    from openpista.tools.memory import memory_tools

    for memory_tool in memory_tools(lambda: context.memory):
        register(memory_tool)
