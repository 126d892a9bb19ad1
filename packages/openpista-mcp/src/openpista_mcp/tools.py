"""openpista tools for what MCP servers offer: ``mcp.<server>.<tool>``, and per server with
resources ``mcp.<server>.resources`` and ``mcp.<server>.read``.

Each handler finds its MCP tool by name at call time, so a server that changed its tools
(``list_changed``) answers with its current ones; a tool it no longer lists is an error.
:class:`LiveTools` keeps the running registry in step with what the servers list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

import mcp_types

from openpista import PluginContext
from openpista.tools import Tool, ToolError, ToolOutput
from openpista_mcp.connection import ServerConnection
from openpista_mcp.manager import McpManager
from openpista_mcp.results import cut, resource_output, tool_output

log = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 2_000
MAX_TOOLS_PER_SERVER = 128
"""Every tool is in every prompt: a server listing more gets its first ones only."""
MAX_SCHEMA_CHARS = 20_000
"""A larger argument schema is replaced by "any object" (the server still checks)."""
_WIRE_LIMIT = 64  # the longest function name the LLM APIs take
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DROPPED_SCHEMA_KEYS = frozenset({"$schema", "title"})


def all_tools(manager: McpManager) -> list[Tool]:
    """The tools of every server that is ready, those its ``tools`` filter admits."""
    tools: list[Tool] = []
    for connection in manager.connections.values():
        if connection.state == "ready":
            tools.extend(server_tools(manager, connection))
    return tools


class LiveTools:
    """The servers' tools in the runtime's registry (``context.tools``), replaced whenever a
    server lists changed tools or gets ready again (started late, restarted)."""

    def __init__(self, manager: McpManager, context: PluginContext) -> None:
        self._manager = manager
        self._context = context
        self._offered: dict[str, list[Tool]] = {}

    def start(self) -> list[Tool]:
        """The tools to register now; later changes go straight into the registry."""
        tools: list[Tool] = []
        for connection in self._manager.connections.values():
            if connection.state == "ready":
                offered = server_tools(self._manager, connection)
                self._offered[connection.name] = offered
                tools.extend(offered)
            connection.on_tools_changed(self._changed)
        return tools

    def _changed(self, connection: ServerConnection) -> None:
        registry = self._context.tools
        if registry is None:  # still collecting: start() lists the current tools
            return
        offered = server_tools(self._manager, connection)
        # Only what is ours: a name another plugin's tool won at registration stays its own.
        old = [t.name for t in self._offered.get(connection.name, []) if registry.get(t.name) is t]
        for problem in registry.update(remove=old, add=offered):
            log.error("❌ MCP server %s: %s", connection.name, problem)
        self._offered[connection.name] = offered
        log.info("MCP server %s: %d tool(s) offered now", connection.name, len(offered))


def server_tools(manager: McpManager, connection: ServerConnection) -> list[Tool]:
    """One server's tools, plus its resource tools when it offers resources."""
    admitted = [t for t in connection.tools if connection.settings.tools.admits(t.name)]
    if len(admitted) > MAX_TOOLS_PER_SERVER:
        log.warning(
            "MCP server %s offers %d tools: the first %d are used (narrow it with tools.allow)",
            connection.name,
            len(admitted),
            MAX_TOOLS_PER_SERVER,
        )
        admitted = admitted[:MAX_TOOLS_PER_SERVER]
    tools = [_mcp_tool(manager, connection, item) for item in admitted]
    capabilities = connection.capabilities
    if capabilities is not None and capabilities.resources is not None:
        tools.extend(_resource_tools(manager, connection))
    return tools


def tool_name(server: str, tool: str) -> str:
    """``mcp.<server>.<tool>``, the tool part made safe for LLM APIs and kept short enough
    (a long name is cut and ends in a hash of the whole)."""
    name = f"mcp.{server}.{_UNSAFE.sub('_', tool)}"
    if len(name) <= _WIRE_LIMIT:
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[: _WIRE_LIMIT - 9]}_{digest}"


def _mcp_tool(manager: McpManager, connection: ServerConnection, item: mcp_types.Tool) -> Tool:
    server, remote = connection.name, item.name
    max_chars = connection.settings.max_output_chars

    async def call(**arguments: Any) -> ToolOutput:
        if not any(t.name == remote for t in connection.tools):
            raise ToolError(f"MCP server {server} no longer offers the tool {remote}")
        result = await manager.run(connection.call_tool(remote, arguments))
        return tool_output(result, f"{server}-{_UNSAFE.sub('_', remote)}", max_chars)

    description = item.description or item.title or f"The {remote} tool"
    return Tool(
        name=tool_name(server, remote),
        description=cut(f"{description.strip()} (MCP server {server})", MAX_DESCRIPTION_CHARS),
        handler=call,
        parameters=_schema(item.input_schema),
    )


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(schema, default=str)) > MAX_SCHEMA_CHARS:
        return {"type": "object", "properties": {}, "additionalProperties": True}
    cleaned = {k: v for k, v in schema.items() if k not in _DROPPED_SCHEMA_KEYS}
    if cleaned.get("type") != "object":
        cleaned["type"] = "object"
    cleaned.setdefault("properties", {})
    return cleaned


def _resource_tools(manager: McpManager, connection: ServerConnection) -> list[Tool]:
    server = connection.name
    max_chars = connection.settings.max_output_chars

    async def list_resources() -> str:
        resources = await manager.run(connection.list_resources())
        lines = [
            "  ".join(filter(None, [r.uri, r.name, r.mime_type or "", (r.description or "")]))
            for r in resources
        ]
        return cut("\n".join(lines) or f"MCP server {server} lists no resources", max_chars)

    async def read(uri: str = "") -> ToolOutput:
        if not isinstance(uri, str) or not uri:
            raise ToolError("give the uri of a resource (see the resources tool)")
        result = await manager.run(connection.read_resource(uri))
        return resource_output(result, f"{server}-resource", max_chars)

    return [
        Tool(
            name=f"mcp.{server}.resources",
            description=f"List the resources (files, records) of MCP server {server}: "
            "uri, name, type, description.",
            handler=list_resources,
        ),
        Tool(
            name=f"mcp.{server}.read",
            description=f"Read one resource of MCP server {server} by its uri.",
            handler=read,
            parameters={
                "type": "object",
                "properties": {"uri": {"type": "string", "description": "the resource's uri"}},
                "required": ["uri"],
            },
        ),
    ]
