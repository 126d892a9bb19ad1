"""The openpista plugin module of openpista-mcp (entry point ``mcp``).

Registers the tools of the servers in ``[mcp.servers.NAME]`` (started when a runtime
collects its tools, closed with it), their prompts as chat commands, and the
``openpista mcp`` commands. The SDK is
imported only when at least one server is enabled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista import PluginContext, Tool
    from openpista.channels import ChatCommand
    from openpista_mcp.manager import McpManager

log = logging.getLogger(__name__)


def make_manager(context: PluginContext) -> McpManager:
    """The runtime's connected servers (``context.shared(make_manager)``), closed with it;
    raises ConfigError for a bad ``[mcp]`` table."""
    from openpista_mcp.manager import McpManager
    from openpista_mcp.settings import McpSettings

    manager = McpManager(McpSettings.from_config(context.config))
    context.on_close(manager.close)
    manager.start()
    return manager


@hookimpl
def register_tools(register: Callable[[Tool], None], context: PluginContext) -> None:
    """Register ``mcp.<server>.<tool>`` for every tool of every enabled server that started,
    and the servers' ``policy`` rules; tools that change later (``list_changed``, a server
    started late) replace them in the running registry."""
    if not _any_enabled(context.config.mcp):
        return
    from openpista_mcp.tools import LiveTools

    manager = context.shared(make_manager)
    context.add_policy_rules(manager.settings.policy_rules(context.config.policy))
    for tool in LiveTools(manager, context).start():
        register(tool)


@hookimpl
def register_chat_commands(register: Callable[[ChatCommand], None], context: PluginContext) -> None:
    """Register ``/mcp:<server>:<prompt>`` for every prompt of every server that started."""
    if not _any_enabled(context.config.mcp):
        return
    from openpista_mcp.prompts import prompt_commands

    for command in prompt_commands(context.shared(make_manager), context):
        register(command)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``openpista mcp`` (list, test, import)."""
    from openpista_mcp.cli import mcp

    cli.add_command(mcp)


def _any_enabled(table: object) -> bool:
    """Whether ``[mcp]`` names a server not disabled (validation comes later, not here)."""
    servers = table.get("servers") if isinstance(table, dict) else None
    if not isinstance(servers, dict) or not servers:
        return False
    return any(
        not isinstance(s, dict) or s.get("enabled", True) is not False for s in servers.values()
    )
