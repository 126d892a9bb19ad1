"""``[mcp]`` validation: every mistake is one ConfigError naming the option."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from openpista.config import ConfigError, Settings
from openpista_mcp.plugin import _any_enabled
from openpista_mcp.settings import McpSettings
from openpista_mcp.tools import tool_name


def settings(**servers: Any) -> McpSettings:
    return McpSettings.from_config(Settings(mcp={"servers": servers}))


def test_transport_is_inferred_from_command_and_url() -> None:
    parsed = settings(
        local={"command": "srv"},
        remote={"url": "https://example.test/mcp"},
        legacy={"url": "https://example.test/sse/?key=1"},
    )

    assert [s.transport for s in parsed.servers.values()] == ["stdio", "http", "sse"]
    assert parsed.servers["local"].tools.admits("anything")


@pytest.mark.parametrize(
    ("servers", "problem"),
    [
        ({"x": {}}, "[mcp] servers.x: Value error, give either command (a stdio server) or url"),
        ({"x": {"command": "a", "url": "http://h/mcp"}}, "give either command"),
        ({"x": {"command": "a", "transport": "sse"}}, "transport 'sse' needs url"),
        ({"x": {"url": "http://h/mcp", "transport": "stdio"}}, 'transport "stdio" needs command'),
        ({"x": {"url": "ftp://h/mcp"}}, "servers.x.url: String should match pattern"),
        ({"x": {"command": "a", "timeout": 0}}, "servers.x.timeout: Input should be greater"),
        ({"x": {"command": "a", "colour": "red"}}, "servers.x.colour: unknown option"),
        ({"x": {"command": "a", "bearer_token_env": "no way"}}, "bearer_token_env"),
        ({"x.y": {"command": "a"}}, "server name 'x.y': use letters, digits"),
        ({"x": "srv --stdio"}, "servers.x: Input should be a valid dictionary"),
        ({"x": {"command": "a", "oauth": True}}, "oauth needs url"),
    ],
)
def test_mistakes_are_named(servers: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        McpSettings.from_config(Settings(mcp={"servers": servers}))

    assert problem in str(raised.value)
    assert str(raised.value).startswith("[mcp] ")


def test_a_bearer_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    server = settings(r={"url": "http://h/mcp", "bearer_token_env": "T", "headers": {"A": "b"}})
    monkeypatch.setenv("T", "s3cret")

    assert server.servers["r"].request_headers() == {"A": "b", "Authorization": "Bearer s3cret"}
    monkeypatch.delenv("T")
    with pytest.raises(ConfigError, match="the environment variable T is not set"):
        server.servers["r"].request_headers()


def test_only_enabled_servers_start() -> None:
    assert not _any_enabled({})
    assert not _any_enabled({"servers": {"a": {"command": "x", "enabled": False}}})
    assert _any_enabled({"servers": {"a": {"command": "x"}}})
    assert list(settings(a={"command": "x", "enabled": False}, b={"command": "y"}).enabled()) == [
        "b"
    ]


def test_tool_names_are_safe_and_short_enough_for_llm_apis() -> None:
    assert tool_name("files", "read_file") == "mcp.files.read_file"
    assert tool_name("files", "a b/c") == "mcp.files.a_b_c"
    long = tool_name("files", "x" * 100)
    assert len(long) == 64
    assert long != tool_name("files", "x" * 99)


def test_the_plugin_module_and_the_cli_do_not_import_the_sdk() -> None:
    code = (
        "import sys, openpista_mcp.plugin, openpista_mcp.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types', 'httpx2')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"


def test_a_server_policy_becomes_rules_for_its_tools() -> None:
    from openpista.policy import ToolPolicy

    parsed = settings(
        closed={"command": "x", "policy": "deny"},
        remote_ok={"command": "x", "policy": {"remote": "allow"}},
        local_asks={"command": "x", "policy": {"local": "ask"}},
        plain={"command": "x"},
        off={"command": "x", "policy": "allow", "enabled": False},
    )
    defaults = Settings().policy  # local = "allow", remote = "ask"
    rules = parsed.policy_rules(defaults)
    policy = ToolPolicy(defaults.model_copy(update={"rules": rules}))

    def decide(tool: str, channel: str) -> str:
        return policy.decide(tool, {}, channel).action

    assert decide("mcp.closed.read", "cli:1") == "deny"
    assert decide("mcp.closed.read", "telegram:42") == "deny"
    assert decide("mcp.remote_ok.read", "telegram:42") == "allow"
    assert decide("mcp.remote_ok.read", "tui:1") == "allow"
    assert decide("mcp.local_asks.read", "cli:1") == "ask"
    assert decide("mcp.local_asks.read", "telegram:42") == "ask"
    assert decide("mcp.plain.read", "cli:1") == "allow"
    assert decide("mcp.closed_twin.read", "cli:1") == "allow", "the glob is the server's only"
    assert not any("off" in rule.tool for rule in rules)


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ("maybe", "servers.x.policy.local: Input should be 'allow', 'ask' or 'deny'"),
        ({"remote": "yes"}, "servers.x.policy.remote: Input should be 'allow', 'ask' or 'deny'"),
        ({"chats": "deny"}, "servers.x.policy.chats: unknown option"),
    ],
)
def test_a_bad_server_policy_is_one_clear_error(policy: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(x={"command": "srv", "policy": policy})
    assert problem in str(caught.value)
