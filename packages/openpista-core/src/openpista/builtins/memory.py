"""Built-in plugin: the ``memory.*`` tools (search and notes of the asking person).

The tool policy decides them like any other tool (on remote chats it asks by default); as
they only ever read and change what belongs to the person who asked, a
``[[policy.rules]]`` entry ``tool = "memory.*"``, ``action = "allow"`` is the usual setting
(docs/memory.md).
"""

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
