"""A real MCP server written with the SDK's server API, for the tests.

``python mcp_demo_server.py`` serves it over stdio; the tests also mount
:func:`build_server`'s streamable-HTTP app on loopback. ``raw-garbage`` and
``raw-old-version`` are servers the SDK cannot write (they break the protocol on purpose),
so they answer by hand.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from mcp_types import EmbeddedResource, TextContent, TextResourceContents

# A 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
BIG_CHARS = 5_000_000


def build_server() -> MCPServer:
    """The demo server: tools for every result kind and failure, a resource, a prompt."""
    server = MCPServer("demo", instructions="a server for openpista's tests")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return f"echo: {text}"

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def picture() -> Image:
        """A tiny PNG image."""
        return Image(data=PIXEL, format="png")

    @server.tool()
    def document() -> list[TextContent | EmbeddedResource]:
        """Text and an embedded resource."""
        embedded = TextResourceContents(uri="demo://notes", mime_type="text/plain", text="notes!")
        return [
            TextContent(type="text", text="here is a document"),
            EmbeddedResource(type="resource", resource=embedded),
        ]

    @server.tool()
    def refuse(reason: str) -> str:
        """Always fails with the reason."""
        raise ToolError(f"refused: {reason}")

    @server.tool()
    async def hang() -> str:
        """Never answers."""
        await anyio.sleep_forever()
        return "unreachable"

    @server.tool()
    def big() -> str:
        """Five million characters."""
        return "B" * (BIG_CHARS // 2) + "E" * (BIG_CHARS // 2)

    @server.tool()
    def crash() -> str:
        """The server process dies mid-call."""
        os._exit(3)

    @server.tool()
    def environment() -> str:
        """The MCP_DEMO_VALUE variable and the working directory."""
        return json.dumps({"value": os.environ.get("MCP_DEMO_VALUE"), "cwd": os.getcwd()})

    @server.tool("odd name/with.dots")
    def odd() -> str:
        """A tool whose name LLM APIs would refuse."""
        return "odd"

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Adds the tool `fresh` and announces the change."""

        def fresh() -> str:
            return "fresh tool"

        server.add_tool(fresh, name="fresh", description="Added at run time.")
        server.remove_tool("add")
        await ctx.notify_tools_changed()  # 2026-era clients (subscriptions/listen)
        await ctx.session.send_tool_list_changed()  # earlier ones (a notification)
        return "grown"

    @server.resource("demo://hello", mime_type="text/plain")
    def hello() -> str:
        return "hello from a resource"

    @server.resource("demo://pixel.png", mime_type="image/png")
    def pixel() -> bytes:
        return PIXEL

    @server.prompt()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Please greet {name} warmly."

    return server


def _raw(mode: str) -> None:
    """Answer JSON-RPC by hand: ``raw-garbage`` breaks its replies to calls,
    ``raw-old-version`` names an unknown protocol version, ``raw-legacy`` is a 2025-era
    server whose tool ``before`` replaces itself by ``after`` and sends ``list_changed``,
    ``raw-hostile`` lists 300 tools, the first with a huge description and schema."""
    tools = ["garbage"] if mode == "raw-garbage" else ["before"]
    if mode == "raw-hostile":  # too many tools, a huge schema and description
        tools = [f"t{index}" for index in range(300)]
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue
        method = message.get("method")
        reply: dict[str, object] = {"id": message["id"]}
        if method == "server/discover":
            reply["error"] = {"code": -32601, "message": "Method not found"}
        elif mode == "raw-old-version" or method == "initialize":
            version = "1999-01-01" if mode == "raw-old-version" else "2025-11-25"
            reply["result"] = {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "raw", "version": "0"},
            }
        elif method == "tools/list":
            listed = [{"name": name, "inputSchema": {"type": "object"}} for name in tools]
            if mode == "raw-hostile":
                huge = {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(500)}
                listed[0] = {
                    "name": "t0",
                    "description": "D" * 1_000_000,
                    "inputSchema": {"type": "object", "properties": huge},
                }
            reply["result"] = {"tools": listed}
        elif mode == "raw-garbage":  # a broken line, then a reply to an id nobody asked for
            _send_line('{"jsonrpc": "2.0", "id": ')
            _send_line('{"jsonrpc": "2.0", "id": 999999, "result": 7}')
            continue
        else:
            tools = ["after"]
            reply["result"] = {"content": [{"type": "text", "text": "changed"}]}
            _send_line(json.dumps({"jsonrpc": "2.0", **reply}))
            reply = {"method": "notifications/tools/list_changed"}
        _send_line(json.dumps({"jsonrpc": "2.0", **reply}))


def _send_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode.startswith("raw-"):
        _raw(mode)
    else:
        build_server().run()
