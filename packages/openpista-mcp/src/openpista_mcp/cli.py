"""``openpista mcp``: list, test and import MCP servers (the SDK is imported per command)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from openpista.cli import CliState, columns, fail

if TYPE_CHECKING:
    from openpista_mcp.connection import ServerConnection
    from openpista_mcp.settings import McpSettings


@click.group()
def mcp() -> None:
    """Model Context Protocol servers: their state, tools and configuration."""


def _settings(state: CliState) -> McpSettings:
    from openpista.config import ConfigError
    from openpista_mcp.settings import McpSettings

    try:
        return McpSettings.from_config(state.settings())
    except ConfigError as exc:
        fail(str(exc), code=2)
        raise  # unreachable: fail exits


@mcp.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per server, in a list.")
@click.pass_obj
def list_servers(state: CliState, as_json: bool) -> None:
    """Connect to every configured server and show its state, tools and last error."""
    from openpista_mcp.manager import McpManager

    settings = _settings(state)
    manager = McpManager(settings, retry=False)
    try:
        manager.start()
        rows = [_status(name, manager.connections.get(name), settings) for name in settings.servers]
    finally:
        manager.close_sync()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No MCP servers configured: add [mcp.servers.NAME] (see docs/mcp.md).")
        return
    table = [["NAME", "STATE", "TOOLS", "SERVER"]]
    table += [[r["name"], r["state"], str(len(r["tools"])), r["server"]] for r in rows]
    for line, row in zip(columns(table), [None, *rows], strict=True):
        click.echo(line)
        if row is not None and row["error"]:
            click.echo(f"    ❌ {row['error']}")


def _status(
    name: str, connection: ServerConnection | None, settings: McpSettings
) -> dict[str, Any]:
    server = settings.servers[name]
    row: dict[str, Any] = {
        "name": name,
        "state": "disabled",
        "server": server.describe(),
        "transport": server.transport,
        "tools": [],
        "error": None,
        "protocol_version": None,
    }
    if connection is not None:
        row["state"] = connection.state
        row["tools"] = [t.name for t in connection.tools if server.tools.admits(t.name)]
        row["error"] = connection.error
        row["protocol_version"] = connection.protocol_version
    return row


@mcp.command("test")
@click.argument("name")
@click.pass_obj
def test_server(state: CliState, name: str) -> None:
    """Connect to server NAME and list its tools and resources."""
    from openpista_mcp.manager import McpManager
    from openpista_mcp.tools import server_tools

    settings = _settings(state)
    if name not in settings.servers:
        known = ", ".join(settings.servers) or "none"
        fail(f"no MCP server {name!r} in [mcp.servers] (configured: {known})")
    manager = McpManager(settings, only=name, retry=False)
    started = time.monotonic()
    try:
        manager.start()
        connection = manager.connections[name]
        if connection.state != "ready":
            fail(f"MCP server {name}: {connection.error}")
        elapsed = time.monotonic() - started
        tools = server_tools(manager, connection)
    finally:
        manager.close_sync()
    click.echo(
        f"✅ {name}: connected in {elapsed:.1f} s (protocol {connection.protocol_version}), "
        f"{len(tools)} tool(s)"
    )
    for line in columns([[t.name, t.description.splitlines()[0][:80]] for t in tools]):
        click.echo(f"  {line}")
    hidden = [t.name for t in connection.tools if not connection.settings.tools.admits(t.name)]
    if hidden:
        click.echo(f"  left out by tools.allow/deny: {', '.join(hidden)}")


@mcp.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def import_servers(state: CliState, file: str) -> None:
    """Add the servers of FILE (the "mcpServers" JSON of other MCP clients) to config.toml."""
    from pathlib import Path  # off `openpista --help`

    from openpista.config import ConfigError, default_config_path
    from openpista_mcp.importer import append_servers, read_mcp_servers

    settings = state.settings()
    target = Path(state.config_path).expanduser() if state.config_path else default_config_path()
    try:
        servers = read_mcp_servers(Path(file))
        added = append_servers(target, servers, existing=set(settings.mcp.get("servers") or {}))
    except ConfigError as exc:
        fail(str(exc), code=2)
    for name in added:
        click.echo(f"✅ added [mcp.servers.{name}]")
    click.echo(f"Written to {target}; check them with: openpista mcp list")


@mcp.command("login")
@click.argument("name")
@click.option("--no-browser", is_flag=True, help="Only print the address to open.")
@click.option("--wait", default=300.0, show_default=True, help="Seconds to wait for the sign-in.")
@click.pass_obj
def login_server(state: CliState, name: str, no_browser: bool, wait: float) -> None:
    """Sign in to remote server NAME (``oauth = true``) and keep its tokens."""
    import asyncio

    from openpista.config import ConfigError
    from openpista_mcp.connection import describe_error, root_cause
    from openpista_mcp.oauth import login, store_path

    settings = _settings(state)
    server = settings.servers.get(name)
    if server is None or not server.oauth:
        fail(f"no MCP server {name!r} with oauth = true in [mcp.servers]")
    assert server is not None  # noqa: S101  an invariant for mypy, not a check
    try:
        count = asyncio.run(login(name, server, open_browser=not no_browser, wait=wait))
    except Exception as exc:
        cause = root_cause(exc)
        text = str(cause) if isinstance(cause, ConfigError) else describe_error(exc)
        fail(f"MCP server {name}: {text}")
    click.echo(f"✅ signed in to {name} ({count} tool(s)); tokens kept in {store_path()}")


@mcp.command("serve")
@click.option("--stdio", "use_stdio", is_flag=True, help="Speak MCP on stdin/stdout (the default).")
@click.option(
    "--http",
    "address",
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp (loopback only; port 0: any free).",
)
@click.pass_obj
def serve_tools(state: CliState, use_stdio: bool, address: str | None) -> None:
    """Offer openpista's own tools, with [policy] applied, to other MCP clients."""
    import asyncio

    from openpista_mcp.serve import enter_serving, parse_address, serve_http, serve_stdio

    if use_stdio and address:
        fail("give --stdio or --http, not both", code=2)
    settings = state.settings()
    try:
        enter_serving()
        if address is None:
            asyncio.run(serve_stdio(settings))
            return
        host, port = parse_address(address)
        asyncio.run(serve_http(settings, host, port))
    except ValueError as exc:
        fail(str(exc), code=2)
    except OSError as exc:
        fail(str(exc.strerror or exc))
    except KeyboardInterrupt:
        pass
