"""``openpista mcp serve`` driven by the official SDK's client: over stdio (a subprocess) and
streamable HTTP on 127.0.0.1, with the policy applied and hostile calls refused.

The served openpista has its own ``system.run`` and, through this plugin, the demo MCP
server's tools, so the policy can be seen to allow, ask about and deny tools."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import subprocess
import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import mcp_types
import pytest
import tomli_w
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from openpista_mcp.serve import MAX_ARGUMENTS_CHARS, parse_address
from openpista_mcp.settings import SERVING_ENV
from openpista_testing.cli import OPENPISTA, Cli

from .conftest import stdio_server
from .mcp_demo_server import PIXEL

pytestmark = pytest.mark.e2e

POLICY = {
    "remote": "ask",
    "rules": [
        {"tool": "mcp.demo.echo", "channels": ["mcp:"], "action": "allow"},
        {"tool": "mcp.demo.add", "channels": ["mcp:"], "action": "allow"},
        {"tool": "mcp.demo.picture", "channels": ["mcp:"], "action": "allow"},
        {"tool": "mcp.demo.crash", "action": "deny"},
        {"tool": "system.run", "command": "echo *", "channels": ["mcp:"], "action": "allow"},
    ],
}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = Cli.isolated(tmp_path / "home")
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "mcp"
    config = {
        "agent": {"workspace": str(cli.home / "workspace")},
        "database": {"url": f"sqlite+aiosqlite:///{cli.home / 'memory.db'}"},
        "policy": POLICY,
        "mcp": {"servers": {"demo": stdio_server()}},
    }
    cli.config.write_text(tomli_w.dumps(config))
    return cli


@asynccontextmanager
async def over_stdio(cli: Cli) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=str(OPENPISTA), args=["mcp", "serve", "--stdio"], env=cli.env
    )
    with (cli.home / "serve.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            yield client


@pytest.fixture
def http_url(cli: Cli) -> Iterator[str]:
    """``openpista mcp serve --http 127.0.0.1:0`` running; its URL from the line it prints."""
    process = subprocess.Popen(
        [str(OPENPISTA), "mcp", "serve", "--http", "127.0.0.1:0"],
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:  # ends when the process exits
        seen.append(line)
        found = re.search(r"at (http://127\.0\.0\.1:\d+/mcp)", line)
        if found:
            break
    try:
        assert found, f"no address printed: {''.join(seen)}"
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()


def text_of(result: mcp_types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, mcp_types.TextContent))


async def check_policy(client: Client) -> None:
    names = [tool.name for tool in (await client.list_tools()).tools]
    assert {"system.run", "mcp.demo.echo", "mcp.demo.add", "mcp.demo.hang"} <= set(names)
    assert "mcp.demo.crash" not in names, "a denied tool is not listed"
    schema = next(t for t in (await client.list_tools()).tools if t.name == "mcp.demo.add")
    assert schema.input_schema["properties"].keys() == {"a", "b"}

    echoed = await client.call_tool("mcp.demo.echo", {"text": "through openpista"})
    assert not echoed.is_error
    assert text_of(echoed) == "echo: through openpista"
    picture = await client.call_tool("mcp.demo.picture", {})
    [image] = [c for c in picture.content if isinstance(c, mcp_types.ImageContent)]
    assert image.mime_type == "image/png"
    assert image.data == base64.b64encode(PIXEL).decode()
    ran = await client.call_tool("system.run", {"command": "echo served"})
    assert not ran.is_error
    assert "served" in text_of(ran)

    asked = await client.call_tool("mcp.demo.hang", {})
    assert asked.is_error
    assert "the tool policy asks before this call runs" in text_of(asked)
    assert 'channels = ["mcp:' in text_of(asked)
    command = await client.call_tool("system.run", {"command": "rm -rf ~"})
    assert command.is_error
    assert "the tool policy asks before this call runs" in text_of(command)
    denied = await client.call_tool("mcp.demo.crash", {})
    assert denied.is_error
    assert text_of(denied).startswith("unknown tool 'mcp.demo.crash'")


async def check_hostile(client: Client) -> None:
    unknown = await client.call_tool("no.such.tool", {"x": 1})
    assert unknown.is_error
    assert text_of(unknown).startswith("unknown tool 'no.such.tool'; available tools: ")
    bad = await client.call_tool("mcp.demo.add", {"a": "one", "b": [2]})
    assert bad.is_error
    assert "invalid" in text_of(bad) or "validation" in text_of(bad).lower()
    huge = await client.call_tool("mcp.demo.echo", {"text": "x" * (MAX_ARGUMENTS_CHARS + 10)})
    assert huge.is_error
    assert f"at most {MAX_ARGUMENTS_CHARS:,} are accepted" in text_of(huge)
    # The server still answers after all that.
    fine = await client.call_tool("mcp.demo.add", {"a": 2, "b": 3})
    assert text_of(fine) == "5"


async def test_stdio_serves_with_the_policy_and_refuses_hostile_calls(cli: Cli) -> None:
    async with over_stdio(cli) as client:
        await asyncio.wait_for(check_policy(client), 120)
        await asyncio.wait_for(check_hostile(client), 120)


async def test_streamable_http_on_loopback_serves_with_the_policy(http_url: str) -> None:
    async with Client(streamable_http_client(http_url), cache=None) as client:
        await asyncio.wait_for(check_policy(client), 120)
        await asyncio.wait_for(check_hostile(client), 120)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("0.0.0.0:8000", "loopback addresses only"),
        ("192.168.1.5:80", "loopback addresses only"),
        ("example.org:80", "loopback addresses only"),
        ("127.0.0.1", "takes HOST:PORT"),
        ("127.0.0.1:99999", "takes HOST:PORT"),
        (":80", "takes HOST:PORT"),
    ],
)
def test_http_address_must_be_loopback_host_and_port(value: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_address(value)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address("localhost:8765") == ("127.0.0.1", 8765)


def test_a_refused_address_is_one_clear_error(cli: Cli) -> None:
    done = cli("mcp", "serve", "--http", "0.0.0.0:8000")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("❌ --http serves on loopback addresses only")
    assert "Traceback" not in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = cli("mcp", "serve", "--http", f"127.0.0.1:{port}")
    assert busy.returncode == 1
    assert busy.stderr.strip() == (
        f"❌ cannot listen on 127.0.0.1:{port} (Address already in use); change --http"
    )


def test_stdio_survives_garbage_input_and_ends_with_it(cli: Cli) -> None:
    cli.config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{cli.home / "m.db"}"\n')
    done = cli("mcp", "serve", stdin='this is not JSON-RPC\n{"jsonrpc": "2.0"\n')
    assert "Traceback" not in done.stdout
    assert done.returncode == 0, done.stderr


async def test_a_config_serving_openpista_to_itself_ends_the_loop_at_once(cli: Cli) -> None:
    config = tomllib.loads(cli.config.read_text())
    config["mcp"]["servers"]["self"] = {"command": str(OPENPISTA), "args": ["mcp", "serve"]}
    cli.config.write_text(tomli_w.dumps(config))
    async with over_stdio(cli) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
    assert "mcp.demo.echo" in names
    assert not [name for name in names if name.startswith("mcp.self.")]
    log = (cli.home / ".openpista" / "mcp" / "self.log").read_text()
    assert "❌ openpista mcp serve was started by another openpista mcp serve" in log


def test_serve_refuses_to_run_under_another_serve(cli: Cli) -> None:
    cli.env[SERVING_ENV] = "1"
    done = cli("mcp", "serve")
    assert done.returncode == 2
    assert done.stderr.startswith("❌ openpista mcp serve was started by another openpista")
