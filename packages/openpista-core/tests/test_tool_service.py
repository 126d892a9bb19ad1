"""openpista's tools for callers outside the agent: the policy decides listing and calls,
plugins' policy rules come after the user's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openpista import hookimpl
from openpista.config import PolicyRule, Settings
from openpista.plugin_context import PluginContext
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista.tool_service import ToolService, open_tool_service
from openpista.tools import tool
from openpista.tools.registry import ToolRegistry

CHANNEL = "mcp:stdio"


@tool("demo.hello")
async def hello(name: str) -> str:
    """Say hello."""
    return f"hello {name}"


@tool("demo.secret")
async def secret() -> str:
    """Never for outside callers."""
    return "the secret"


def settings(tmp_path: Path, **policy: Any) -> Settings:
    return Settings.model_validate(
        {
            "agent": {"workspace": str(tmp_path / "workspace")},
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"},
            "policy": policy,
        }
    )


def service(tmp_path: Path, **policy: Any) -> ToolService:
    registry = ToolRegistry([hello, secret])
    return ToolService(registry, settings(tmp_path, **policy).policy, CHANNEL)


async def test_allowed_tools_run_and_denied_ones_are_neither_listed_nor_run(
    tmp_path: Path,
) -> None:
    served = service(
        tmp_path,
        remote="allow",
        rules=[{"tool": "demo.secret", "action": "deny"}],
    )
    assert [t.name for t in served.tools()] == ["demo.hello"]
    assert (await served.call("demo.hello", {"name": "ada"})).output == "hello ada"

    refused = await served.call("demo.secret", {})
    assert refused.is_error
    assert refused.output == "unknown tool 'demo.secret'; available tools: demo.hello"


async def test_ask_is_refused_with_the_rule_that_would_allow_it(tmp_path: Path) -> None:
    served = service(tmp_path)  # policy.remote = "ask" applies to mcp: channels
    assert [t.name for t in served.tools()] == ["demo.hello", "demo.secret"]

    refused = await served.call("demo.hello", {"name": "ada"})
    assert refused.is_error
    assert refused.output == (
        "the tool policy asks before this call runs (default for remote channels "
        "(policy.remote)), and nobody can approve it here; allow it for mcp:stdio with a "
        '[[policy.rules]] entry: { tool = "demo.hello", channels = ["mcp:stdio"], '
        'action = "allow" }'
    )


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("nope", {}, "unknown tool 'nope'; available tools: demo.hello, demo.secret"),
        ("demo.hello", {"name": 7}, "invalid arguments for tool demo.hello: argument 'name'"),
        ("demo.hello", {"x": "y" * 1_000_000}, "unexpected argument 'x'"),
    ],
)
async def test_hostile_calls_are_error_results(
    tmp_path: Path, name: str, arguments: dict[str, Any], expected: str
) -> None:
    served = service(tmp_path, remote="allow")
    result = await served.call(name, arguments)
    assert result.is_error
    assert expected in result.output
    assert len(result.output) < 2_000


async def test_system_run_stays_listed_while_a_rule_allows_some_commands(tmp_path: Path) -> None:
    async with open_tool_service(
        settings(
            tmp_path,
            remote="deny",
            rules=[{"tool": "system.run", "command": "echo *", "action": "allow"}],
        ),
        CHANNEL,
    ) as served:
        assert [t.name for t in served.tools()] == ["system.run"]
        ran = await served.call("system.run", {"command": "echo served"})
        assert not ran.is_error
        assert "served" in ran.output
        denied = await served.call("system.run", {"command": "touch x"})
        assert denied.is_error
        assert denied.output.startswith("the tool policy denies this call")


class PolicyPlugin:
    """Brings an ``ask`` rule for its tool, as an MCP server's ``policy`` does."""

    @hookimpl
    def register_tools(self, register: Callable[[Any], None], context: PluginContext) -> None:
        context.add_policy_rules([PolicyRule(tool="demo.*", action="deny")])
        register(hello)


async def test_plugin_rules_come_after_the_users_and_before_the_defaults(tmp_path: Path) -> None:
    host = PluginHost.load(builtins=False, entry_points=False)
    host.add("policy", PolicyPlugin())
    user_rule = {"tool": "demo.hello", "channels": ["local:"], "action": "allow"}
    async with await Runtime.open(settings(tmp_path, rules=[user_rule]), host) as runtime:
        rules = runtime.settings.policy.rules
        assert [(r.tool, r.action) for r in rules] == [("demo.hello", "allow"), ("demo.*", "deny")]
        served = ToolService(runtime.toolbox.tools, runtime.settings.policy, "local:x")
        assert (await served.call("demo.hello", {"name": "a"})).output == "hello a"
        elsewhere = ToolService(runtime.toolbox.tools, runtime.settings.policy, CHANNEL)
        assert elsewhere.tools() == []


async def test_tools_that_need_a_conversation_are_neither_listed_nor_run(tmp_path: Path) -> None:
    # memory.remember outside a conversation would only say "who is asking?": not offered.
    async with open_tool_service(settings(tmp_path, remote="allow"), CHANNEL) as served:
        names = [t.name for t in served.tools()]
        assert "system.run" in names
        assert [n for n in names if n.startswith("memory.")] == []
        refused = await served.call("memory.remember", {"text": "a note"})
    assert refused.is_error
    assert refused.output.startswith("unknown tool 'memory.remember'")
