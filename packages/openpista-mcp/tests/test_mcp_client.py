"""The MCP client against real servers: the demo server over stdio, streamable HTTP and SSE,
and servers that hang, crash, break the protocol or speak an unknown version."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.config import PolicyRule, Settings
from openpista.models import ToolCall, ToolResult
from openpista.tools.registry import ToolRegistry
from openpista_mcp.manager import McpManager
from openpista_mcp.settings import McpSettings
from openpista_mcp.tools import all_tools
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator

from .conftest import TOKEN, HttpServer, stdio_server

Connect = Callable[..., McpManager]
FAIL_WITH_A_MESSAGE = "import sys; sys.stderr.write('no config found in /etc/demo\\n'); sys.exit(2)"


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """``connect(name=table, ...)`` starts those servers; all are closed after the test."""
    managers: list[McpManager] = []

    def start(**servers: dict[str, Any]) -> McpManager:
        manager = McpManager(McpSettings.model_validate({"servers": servers}))
        managers.append(manager)
        manager.start()
        return manager

    yield start
    for manager in managers:
        await manager.close()


async def call(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    return await registry.dispatch(ToolCall(id="c1", name=name, arguments=arguments))


async def wait_ready(manager: McpManager, name: str) -> None:
    connection = manager.connections[name]
    for _ in range(400):
        if connection.state == "ready":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never came back: {connection.state} {connection.error}")


async def test_stdio_tools_are_registered_with_their_schemas_and_answer(
    connect: Connect, openpista_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    registry = ToolRegistry(all_tools(connect(demo=stdio_server())))

    assert "mcp.demo.echo" in registry
    add = registry.get("mcp.demo.add")
    assert add is not None
    assert add.parameters["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert add.parameters["required"] == ["a", "b"]
    assert "(MCP server demo)" in add.description
    echoed = await call(registry, "mcp_demo_echo", text="hi there")  # the wire name works too
    assert (echoed.is_error, echoed.output) == (False, "echo: hi there")
    assert (await call(registry, "mcp.demo.add", a=2, b=40)).output == "42"
    # The server's stderr (the SDK warns about the odd tool name) is logged, not shown.
    assert "Tool name validation warning" not in capfd.readouterr().err
    # (rich wraps the line at the width it guesses: "warning" may move to the next line)
    assert "Tool name validation" in (openpista_home / "mcp" / "demo.log").read_text()


async def test_results_carry_images_embedded_resources_and_errors(connect: Connect) -> None:
    registry = ToolRegistry(all_tools(connect(demo=stdio_server())))

    picture = await call(registry, "mcp.demo.picture")
    [image] = picture.attachments
    assert (image.mime_type, image.name) == ("image/png", "demo-picture-0.png")
    assert image.data
    assert "[image demo-picture-0.png attached]" in picture.output
    document = await call(registry, "mcp.demo.document")
    assert document.output == "here is a document\n--- demo://notes (text/plain) ---\nnotes!"
    refused = await call(registry, "mcp.demo.refuse", reason="not today")
    assert refused.is_error
    assert "refused: not today" in refused.output


async def test_a_huge_result_is_cut_in_the_middle(connect: Connect) -> None:
    registry = ToolRegistry(all_tools(connect(demo=stdio_server(max_output_chars=1000))))

    result = await call(registry, "mcp.demo.big")

    assert not result.is_error
    assert result.output.startswith("B" * 500)
    assert result.output.endswith("E" * 500)
    assert "[... 4,999,000 characters truncated ...]" in result.output
    assert len(result.output) < 1100


async def test_a_hanging_tool_times_out_and_the_server_keeps_working(connect: Connect) -> None:
    registry = ToolRegistry(all_tools(connect(demo=stdio_server(timeout=0.5))))

    hung = await call(registry, "mcp.demo.hang")

    assert hung.is_error
    assert "MCP tool hang of server demo timed out after 0.5 s" in hung.output
    assert (await call(registry, "mcp.demo.echo", text="still here")).output == "echo: still here"


async def test_a_server_that_crashes_mid_call_is_reported_and_restarted(connect: Connect) -> None:
    manager = connect(demo=stdio_server())
    registry = ToolRegistry(all_tools(manager))

    crashed = await call(registry, "mcp.demo.crash")

    assert crashed.is_error
    assert "closed the connection during the call; openpista starts it again" in crashed.output
    await wait_ready(manager, "demo")
    assert manager.connections["demo"].restarts == 1
    assert (await call(registry, "mcp.demo.echo", text="back")).output == "echo: back"


async def test_a_server_that_fails_to_start_leaves_the_others_working(connect: Connect) -> None:
    manager = connect(
        broken={"command": sys.executable, "args": ["-c", FAIL_WITH_A_MESSAGE]},
        missing={"command": "/nonexistent/mcp-server"},
        silent={"command": sys.executable, "args": ["-c", "import time; time.sleep(60)"]}
        | {"startup_timeout": 0.5},
        demo=stdio_server(),
    )

    broken, missing = manager.connections["broken"], manager.connections["missing"]
    assert broken.state == "failed"
    assert broken.error == "Connection closed; it wrote: no config found in /etc/demo"
    assert missing.state == "failed"
    assert missing.error == "command not found: /nonexistent/mcp-server"
    assert manager.connections["silent"].error == "no answer within 0.5 s"
    registry = ToolRegistry(all_tools(manager))
    assert {name.split(".")[1] for name in registry.names()} == {"demo"}
    assert (await call(registry, "mcp.demo.echo", text="ok")).output == "echo: ok"


async def test_malformed_json_rpc_is_named_when_the_call_times_out(connect: Connect) -> None:
    manager = connect(raw=stdio_server("raw-garbage", timeout=1))
    registry = ToolRegistry(all_tools(manager))

    result = await call(registry, "mcp.raw.garbage")

    assert result.is_error
    assert "timed out after 1 s (the server sent malformed JSON-RPC" in result.output


async def test_an_unsupported_protocol_version_is_a_clear_start_error(connect: Connect) -> None:
    manager = connect(old=stdio_server("raw-old-version"))

    old = manager.connections["old"]
    assert old.state == "failed"
    assert old.error == "RuntimeError: Unsupported protocol version from the server: 1999-01-01"
    assert all_tools(manager) == []


async def test_list_changed_updates_the_tools_the_server_answers_for(connect: Connect) -> None:
    manager = connect(demo=stdio_server())
    registry = ToolRegistry(all_tools(manager))
    connection = manager.connections["demo"]

    assert (await call(registry, "mcp.demo.grow")).output == "grown"
    for _ in range(200):
        if "fresh" in [t.name for t in connection.tools]:
            break
        await asyncio.sleep(0.05)

    names = [t.name for t in connection.tools]
    assert "fresh" in names
    assert "add" not in names
    gone = await call(registry, "mcp.demo.add", a=1, b=2)
    assert gone.is_error
    assert gone.output == "MCP server demo no longer offers the tool add"
    assert "mcp.demo.fresh" in [t.name for t in all_tools(manager)]


async def test_a_2025_era_server_announcing_list_changed_is_listed_again(connect: Connect) -> None:
    manager = connect(raw=stdio_server("raw-legacy"))
    registry = ToolRegistry(all_tools(manager))
    connection = manager.connections["raw"]

    assert connection.protocol_version == "2025-11-25"
    assert (await call(registry, "mcp.raw.before")).output == "changed"
    for _ in range(200):
        if [t.name for t in connection.tools] == ["after"]:
            break
        await asyncio.sleep(0.05)

    assert [t.name for t in connection.tools] == ["after"]
    gone = await call(registry, "mcp.raw.before")
    assert gone.output == "MCP server raw no longer offers the tool before"


async def test_a_hostile_listing_is_bounded(connect: Connect) -> None:
    tools = all_tools(connect(hostile=stdio_server("raw-hostile")))

    assert len(tools) == 128
    first = tools[0]
    assert len(first.description) < 2_100
    assert "characters truncated" in first.description
    assert first.parameters == {"type": "object", "properties": {}, "additionalProperties": True}


async def test_environment_and_working_directory_reach_a_stdio_server(
    connect: Connect, tmp_path: Path
) -> None:
    server = stdio_server(env={"MCP_DEMO_VALUE": "v-123"}, cwd=str(tmp_path))
    registry = ToolRegistry(all_tools(connect(demo=server)))

    seen = json.loads((await call(registry, "mcp.demo.environment")).output)

    assert seen == {"value": "v-123", "cwd": str(tmp_path)}


async def test_allow_and_deny_globs_choose_the_tools(connect: Connect) -> None:
    server = stdio_server(tools={"allow": ["e*", "odd*", "big"], "deny": ["big"]})
    names = [tool.name for tool in all_tools(connect(demo=server))]

    assert names[:3] == ["mcp.demo.echo", "mcp.demo.environment", "mcp.demo.odd_name_with_dots"]
    assert "mcp.demo.big" not in names


async def test_a_tool_name_llm_apis_refuse_is_made_safe(connect: Connect) -> None:
    registry = ToolRegistry(all_tools(connect(demo=stdio_server())))

    assert (await call(registry, "mcp_demo_odd_name_with_dots")).output == "odd"


async def test_resources_are_listed_and_read(connect: Connect) -> None:
    registry = ToolRegistry(all_tools(connect(demo=stdio_server())))

    listing = await call(registry, "mcp.demo.resources")
    assert "demo://hello  hello  text/plain" in listing.output
    text = await call(registry, "mcp.demo.read", uri="demo://hello")
    assert text.output == "--- demo://hello (text/plain) ---\nhello from a resource"
    image = await call(registry, "mcp.demo.read", uri="demo://pixel.png")
    assert [a.mime_type for a in image.attachments] == ["image/png"]
    unknown = await call(registry, "mcp.demo.read", uri="demo://nothing")
    assert unknown.is_error
    assert "reading demo://nothing from MCP server demo failed" in unknown.output


async def test_streamable_http_with_a_bearer_token_from_the_environment(
    http_server: HttpServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_TOKEN", TOKEN)
    server = {"url": http_server.url, "bearer_token_env": "DEMO_TOKEN", "headers": {"X-A": "b"}}
    registry = ToolRegistry(all_tools(connect(remote=server)))

    assert (await call(registry, "mcp.remote.add", a=1, b=2)).output == "3"
    big = await call(registry, "mcp.remote.big")
    assert "[... 4,990,000 characters truncated ...]" in big.output
    assert set(http_server.authorizations) == {f"Bearer {TOKEN}"}


async def test_a_remote_server_refusing_the_token_is_reported(
    http_server: HttpServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_TOKEN", "wrong")
    manager = connect(
        remote={"url": http_server.url, "bearer_token_env": "DEMO_TOKEN"},
        unset={"url": http_server.url, "bearer_token_env": "DEMO_UNSET_TOKEN"},
    )

    remote = manager.connections["remote"]
    assert remote.state == "failed"
    assert remote.error == f"Server returned an error response (HTTP 401 from {http_server.url})"
    unset = manager.connections["unset"]
    assert unset.error == "the environment variable DEMO_UNSET_TOKEN is not set"
    assert unset.retry_at is None  # a configuration problem is not retried


async def test_legacy_sse_transport(
    sse_server: HttpServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_TOKEN", TOKEN)
    manager = connect(legacy={"url": sse_server.url, "bearer_token_env": "DEMO_TOKEN"})
    registry = ToolRegistry(all_tools(manager))

    assert manager.connections["legacy"].settings.transport == "sse"
    assert (await call(registry, "mcp.legacy.echo", text="old")).output == "echo: old"


async def test_tools_added_at_run_time_reach_the_next_turn_of_the_llm(
    tmp_path: Path, llm_emulator: LlmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openpista.runtime import Runtime

    monkeypatch.setenv("OPENPISTA_LOAD_PLUGINS", "mcp")
    settings = emulator_settings(llm_emulator, tmp_path).model_copy(
        update={"mcp": {"servers": {"demo": stdio_server()}}}
    )
    async with await Runtime.open(settings) as runtime:
        registry = runtime.toolbox.tools
        agent = runtime.agent()
        llm_emulator.reply_tool_calls([("mcp_demo_grow", {})])
        llm_emulator.reply_text("it grew")
        assert (await agent.run_turn("s1", "grow")).text == "it grew"
        for _ in range(400):
            if "mcp.demo.fresh" in registry:
                break
            await asyncio.sleep(0.05)
        assert "mcp.demo.fresh" in registry
        assert "mcp.demo.add" not in registry

        llm_emulator.reply_tool_calls([("mcp_demo_fresh", {})])
        llm_emulator.reply(lambda body: "said: " + body["messages"][-1]["content"])
        assert (await agent.run_turn("s1", "use it")).text == "said: fresh tool"

    offered = [t["function"]["name"] for t in llm_emulator.requests[2].json["tools"]]
    assert "mcp_demo_fresh" in offered
    assert "mcp_demo_add" not in offered
    first = [t["function"]["name"] for t in llm_emulator.requests[0].json["tools"]]
    assert "mcp_demo_add" in first
    assert "mcp_demo_fresh" not in first


async def test_a_server_policy_is_applied_after_the_users_rules(
    tmp_path: Path, llm_emulator: LlmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openpista.policy import ToolPolicy
    from openpista.runtime import Runtime

    monkeypatch.setenv("OPENPISTA_LOAD_PLUGINS", "mcp")
    user_rule = {"tool": "mcp.demo.echo", "channels": ["telegram:"], "action": "allow"}
    settings = emulator_settings(llm_emulator, tmp_path).model_copy(
        update={
            "mcp": {"servers": {"demo": stdio_server(policy={"remote": "deny"})}},
            "policy": Settings().policy.model_copy(
                update={"rules": [PolicyRule.model_validate(user_rule)]}
            ),
        }
    )
    async with await Runtime.open(settings) as runtime:
        policy = ToolPolicy(runtime.settings.policy)
        assert policy.decide("mcp.demo.echo", {}, "telegram:1").action == "allow"
        denied = policy.decide("mcp.demo.add", {}, "telegram:1")
        assert denied.action == "deny"
        assert denied.reason == "rule 3 (tool='mcp.demo.*')"
        assert policy.decide("mcp.demo.add", {}, "cli:1").action == "allow"


async def test_a_change_never_removes_or_replaces_another_plugins_tool(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    from openpista.plugin_context import PluginContext
    from openpista.tools import Tool
    from openpista_mcp.tools import LiveTools

    async def theirs() -> str:
        return "another plugin's"

    echo = Tool(name="mcp.demo.echo", description="Taken first.", handler=theirs)
    fresh = Tool(name="mcp.demo.fresh", description="Taken first.", handler=theirs)
    manager = connect(demo=stdio_server())
    context = PluginContext(Settings())
    registry = ToolRegistry([echo, fresh])
    for tool in LiveTools(manager, context).start():
        if tool.name not in registry:  # as build_toolbox: a taken name is left out
            registry.register(tool)
    context.tools = registry

    assert (await call(registry, "mcp.demo.grow")).output == "grown"
    for _ in range(400):
        if "mcp.demo.add" not in registry:
            break
        await asyncio.sleep(0.05)

    assert "mcp.demo.add" not in registry, "the removed tool is gone"
    assert registry.get("mcp.demo.echo") is echo
    assert registry.get("mcp.demo.fresh") is fresh
    assert "tool mcp.demo.fresh is already registered" in caplog.text
