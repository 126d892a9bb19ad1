"""End to end: the installed ``openpista`` command with the MCP plugin and the demo server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.emulator import LlmEmulator

from .conftest import BROWSER, DEMO, HttpServer, stdio_server

pytestmark = pytest.mark.e2e


def mcp_cli(tmp_path: Path, emulator: LlmEmulator | None, servers: dict[str, Any]) -> Cli:
    cli = Cli.isolated(tmp_path / "home", emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "mcp"
    if emulator is None:
        cli.config.write_text("")
    if servers:
        with cli.config.open("a") as handle:
            handle.write("\n" + tomli_w.dumps({"mcp": {"servers": servers}}))
    return cli


def test_run_calls_an_mcp_tool_and_prints_its_result(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    cli = mcp_cli(tmp_path, llm_emulator, {"demo": stdio_server()})
    llm_emulator.reply_tool_calls([("mcp_demo_echo", {"text": "from the LLM"})])
    llm_emulator.reply(lambda body: "The tool said: " + body["messages"][-1]["content"])

    done = cli("run", "-e", "echo something through MCP")

    assert done.returncode == 0, done.stderr
    assert "The tool said: echo: from the LLM" in done.stdout
    assert "⚙ mcp.demo.echo" in done.stderr
    offered = [tool["function"] for tool in llm_emulator.requests[0].json["tools"]]
    echo = next(tool for tool in offered if tool["name"] == "mcp_demo_echo")
    assert echo["parameters"]["required"] == ["text"]


def test_run_keeps_working_when_a_server_does_not_start(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    broken = {"command": sys.executable, "args": ["-c", "import sys; sys.exit(2)"]}
    cli = mcp_cli(tmp_path, llm_emulator, {"broken": broken})
    llm_emulator.reply_text("fine without it")

    done = cli("run", "-e", "hello")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fine without it"
    assert "❌ MCP server broken: Connection closed" in done.stderr


def test_list_shows_state_tools_and_errors(tmp_path: Path) -> None:
    cli = mcp_cli(
        tmp_path,
        None,
        {
            "demo": stdio_server(tools={"deny": ["crash", "hang", "big"]}),
            "gone": {"command": "/nonexistent/server"},
            "off": stdio_server(enabled=False),
        },
    )

    listed = cli("mcp", "list", "--json")
    shown = cli("mcp", "list")

    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["demo"]["state"] == "ready"
    assert "echo" in rows["demo"]["tools"]
    assert "crash" not in rows["demo"]["tools"]
    assert (rows["gone"]["state"], rows["gone"]["error"]) == (
        "failed",
        "command not found: /nonexistent/server",
    )
    assert rows["off"]["state"] == "disabled"
    assert "    ❌ command not found: /nonexistent/server" in shown.stdout.splitlines()


def test_test_connects_to_one_server_and_lists_its_tools(tmp_path: Path) -> None:
    cli = mcp_cli(tmp_path, None, {"demo": stdio_server(), "gone": {"command": "/no/such"}})

    tested = cli("mcp", "test", "demo")
    failed = cli("mcp", "test", "gone")
    unknown = cli("mcp", "test", "nobody")

    assert tested.returncode == 0, tested.stderr
    assert "✅ demo: connected" in tested.stdout
    assert "mcp.demo.echo" in tested.stdout
    assert "mcp.demo.read" in tested.stdout
    assert (failed.returncode, failed.stderr.strip()) == (
        1,
        "❌ MCP server gone: command not found: /no/such",
    )
    assert "no MCP server 'nobody' in [mcp.servers] (configured: demo, gone)" in unknown.stderr


def test_a_bad_server_table_is_one_clear_error(tmp_path: Path) -> None:
    cli = mcp_cli(tmp_path, None, {"both": {"command": "x", "url": "http://127.0.0.1:1/mcp"}})

    listed = cli("mcp", "list")

    assert listed.returncode == 2
    assert listed.stderr.startswith("❌ [mcp] servers.both: Value error, give either command")
    assert "Traceback" not in listed.stderr


def test_import_adds_mcp_servers_json_to_the_config_and_keeps_the_file(tmp_path: Path) -> None:
    cli = mcp_cli(tmp_path, None, {})
    cli.config.write_text(cli.config.read_text() + "\n# my own comment\n")
    source = tmp_path / "claude.json"
    source.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "demo": {
                        "command": sys.executable,
                        "args": [str(DEMO)],
                        "env": {"MCP_DEMO_VALUE": "x"},
                        "autoApprove": ["echo"],
                    },
                    "remote": {"type": "sse", "url": "http://127.0.0.1:9/sse", "disabled": True},
                }
            }
        )
    )

    imported = cli("mcp", "import", str(source))
    again = cli("mcp", "import", str(source))
    tested = cli("mcp", "test", "demo")

    assert imported.returncode == 0, imported.stderr
    assert "✅ added [mcp.servers.demo]" in imported.stdout
    text = cli.config.read_text()
    assert "# my own comment" in text
    servers = tomllib.loads(text)["mcp"]["servers"]
    assert servers["remote"] == {"url": "http://127.0.0.1:9/sse", "transport": "sse"} | {
        "enabled": False
    }
    assert servers["demo"]["env"] == {"MCP_DEMO_VALUE": "x"}
    assert again.returncode == 2
    assert "already in [mcp.servers]: demo, remote" in again.stderr
    assert tested.returncode == 0, tested.stderr


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("not json", "not JSON"),
        ('{"mcpServers": []}', 'no "mcpServers" object'),
        ('{"mcpServers": {"a b": {"command": "x"}}}', "server name 'a b'"),
        ('{"mcpServers": {"a": {"type": "pigeon", "url": "http://x"}}}', "unknown transport"),
        ('{"mcpServers": {"a": {"args": ["x"]}}}', "give either command"),
    ],
)
def test_import_refuses_a_broken_file(tmp_path: Path, content: str, error: str) -> None:
    cli = mcp_cli(tmp_path, None, {})
    before = cli.config.read_text()
    source = tmp_path / "servers.json"
    source.write_text(content)

    imported = cli("mcp", "import", str(source))

    assert imported.returncode == 2
    assert imported.stderr.startswith("❌ ")
    assert error in imported.stderr
    assert cli.config.read_text() == before


def test_login_signs_in_with_oauth_and_the_tokens_open_the_server(
    tmp_path: Path, oauth_server: HttpServer
) -> None:
    cli = mcp_cli(tmp_path, None, {"locked": {"url": oauth_server.url, "oauth": True}})
    cli.env["BROWSER"] = f"{sys.executable} {BROWSER} %s"

    before = cli("mcp", "test", "locked")
    login = cli("mcp", "login", "locked", "--wait", "60")
    after = cli("mcp", "test", "locked")

    assert before.returncode == 1
    assert (
        "❌ MCP server locked: it needs a sign-in: run openpista mcp login locked" in before.stderr
    )
    assert login.returncode == 0, login.stderr
    assert "Open this address to sign in to locked:" in login.stdout
    assert "✅ signed in to locked (1 tool(s))" in login.stdout
    assert oauth_server.oauth.authorizations == 1
    store = cli.home / ".openpista" / "mcp" / "oauth.json"
    assert store.stat().st_mode & 0o777 == 0o600
    [entry] = json.loads(store.read_text()).values()
    assert entry["tokens"]["access_token"] in oauth_server.oauth.access
    assert after.returncode == 0, after.stderr
    assert "mcp.locked.secret" in after.stdout


def test_login_refuses_a_server_without_oauth(tmp_path: Path) -> None:
    cli = mcp_cli(tmp_path, None, {"demo": stdio_server()})

    login = cli("mcp", "login", "demo")

    assert login.returncode == 1
    assert login.stderr.strip() == "❌ no MCP server 'demo' with oauth = true in [mcp.servers]"


def test_the_daemon_lists_prompts_in_help_and_runs_them_as_turns(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    cli = mcp_cli(tmp_path, llm_emulator, {"demo": stdio_server()})
    llm_emulator.reply(lambda body: "answering: " + body["messages"][-1]["content"])

    daemon = subprocess.Popen(
        [str(OPENPISTA), "start"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )
    assert daemon.stdin is not None
    assert daemon.stdout is not None
    assert daemon.stderr is not None
    watchdog = threading.Timer(120, daemon.kill)
    watchdog.start()
    # Channels read input before plugins get the daemon's services: type once it is ready,
    # and end the input (which stops the daemon) once the prompt's turn is answered.
    for line in daemon.stderr:
        if "openpista is ready" in line:
            break
    daemon.stdin.write("/help\n/mcp:demo:greet name='Ada Lovelace'\n")
    daemon.stdin.flush()
    shown = []
    for line in daemon.stdout:
        shown.append(line)
        if line.startswith("answering:"):
            break
    daemon.stdin.close()
    daemon.wait()
    watchdog.cancel()

    out = "".join(shown)
    assert daemon.returncode == 0, daemon.stderr.read()
    assert "/mcp:demo:greet name=..." in out
    assert "▶ prompt greet of demo sent to the agent" in out
    assert "answering: Please greet Ada Lovelace warmly." in out
