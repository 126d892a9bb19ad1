"""``openpista mcp serve``: openpista's own tools as an MCP server (the SDK's low-level
server) over stdio or streamable HTTP on a loopback address.

The tools are those of a runtime for the configuration, with the ``[policy]`` applied to
the channel ``mcp:stdio`` or ``mcp:http`` (:mod:`openpista.tool_service`): tools it denies
are not listed, calls it denies or would ask about are refused (an MCP client has no one
openpista could ask), allowed calls run as in a chat.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

import mcp_types
from mcp.server.lowlevel import Server

from openpista import ToolResult, __version__
from openpista.config import Settings
from openpista.serving import bind_tcp, socket_url
from openpista.tool_service import ToolService, open_tool_service
from openpista_mcp.settings import SERVING_ENV

MAX_ARGUMENTS_CHARS = 1_000_000
"""A call whose arguments take more JSON than this is refused before any tool sees it."""
STDIO_CHANNEL = "mcp:stdio"
HTTP_CHANNEL = "mcp:http"
_INSTRUCTIONS = (
    "openpista's tools (its shell, sandboxes and desktop tools), with openpista's tool "
    "policy applied: a refused call says which [[policy.rules]] entry would allow it."
)


def build_server(service: ToolService) -> Server[Any]:
    """An MCP server listing ``service``'s tools and running their calls through it."""

    async def list_tools(
        ctx: Any, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(
            tools=[
                mcp_types.Tool(name=t.name, description=t.description, input_schema=t.parameters)
                for t in service.tools()
            ]
        )

    async def call_tool(
        ctx: Any, params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        arguments = params.arguments or {}
        size = len(json.dumps(arguments, default=str))
        if size > MAX_ARGUMENTS_CHARS:
            return _error(
                f"the arguments of {params.name} take {size:,} characters of JSON; "
                f"at most {MAX_ARGUMENTS_CHARS:,} are accepted"
            )
        return _result(await service.call(params.name, dict(arguments)))

    return Server(
        "openpista",
        version=__version__,
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _result(result: ToolResult) -> mcp_types.CallToolResult:
    content: list[mcp_types.ContentBlock] = [mcp_types.TextContent(type="text", text=result.output)]
    for attachment in result.attachments:
        if attachment.is_image and attachment.data:
            content.append(
                mcp_types.ImageContent(
                    type="image", data=attachment.data, mime_type=attachment.mime_type
                )
            )
        else:
            content.append(mcp_types.TextContent(type="text", text=attachment.describe()))
    return mcp_types.CallToolResult(content=content, is_error=result.is_error)


def _error(message: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=message)], is_error=True
    )


def enter_serving() -> None:
    """Mark this process as serving; raises ValueError when an ``openpista mcp serve`` up
    the chain of processes already does (see :data:`SERVING_ENV`)."""
    if os.environ.get(SERVING_ENV):
        raise ValueError(
            "openpista mcp serve was started by another openpista mcp serve: an "
            "[mcp.servers] entry runs openpista itself; remove it from that config"
        )
    os.environ[SERVING_ENV] = "1"


async def serve_stdio(settings: Settings) -> None:
    """Serve on stdin/stdout until the client closes stdin."""
    from mcp.server.stdio import stdio_server

    async with open_tool_service(settings, STDIO_CHANNEL) as service:
        server = build_server(service)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) of a loopback address; raises ValueError
    saying what is wrong. Only loopback: the endpoint has no authentication."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--http takes HOST:PORT (127.0.0.1:8765), not {value!r}")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(
            f"--http serves on loopback addresses only (127.0.0.1, ::1), not {host}: "
            "the endpoint has no authentication"
        )
    return ("127.0.0.1" if host == "localhost" else host), int(port)


async def serve_http(settings: Settings, host: str, port: int) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted; the address is
    printed to stderr once the socket listens (raises OSError when it cannot)."""
    import sys

    import uvicorn

    sock = bind_tcp(host, port, option="--http")
    try:
        async with open_tool_service(settings, HTTP_CHANNEL) as service:
            app = build_server(service).streamable_http_app(host=host)
            config = uvicorn.Config(app, log_level="warning", lifespan="on")
            url = f"{socket_url(sock, 'http')}/mcp"
            print(f"✅ serving openpista's tools at {url}", file=sys.stderr, flush=True)
            await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
