"""End to end: the installed ``openpista`` command against the LLM emulator, real bash, SQLite."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.emulator import LlmEmulator, TextReply

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def tool_outputs(body: dict[str, Any]) -> list[str]:
    """The tool results the agent sent back in an OpenAI chat request."""
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def echo_last_tool_output(body: dict[str, Any]) -> str:
    return "The tool said:\n" + tool_outputs(body)[-1]


def sessions(cli: Cli) -> list[dict[str, Any]]:
    listing = cli("sessions", "--json")
    assert listing.returncode == 0, listing.stderr
    result: list[dict[str, Any]] = json.loads(listing.stdout)
    return result


def test_run_lists_files_with_the_shell_tool_and_stores_the_session(
    cli: Cli, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    target = tmp_path / "listing"
    target.mkdir()
    (target / "needle-4711.txt").write_text("x")
    llm_emulator.reply_tool_calls([("system_run", {"command": f"ls {target}"})])
    llm_emulator.reply(echo_last_tool_output)

    done = cli("run", "-e", f"list the files in {target}")

    assert done.returncode == 0, done.stderr
    assert "needle-4711.txt" in done.stdout
    assert "⚙ system.run" in done.stderr
    assert "session: " in done.stderr
    first_request = llm_emulator.requests[0].json
    assert first_request["messages"][-1] == {
        "role": "user",
        "content": f"list the files in {target}",
    }
    assert "system_run" in [tool["function"]["name"] for tool in first_request["tools"]]
    [stored] = sessions(cli)
    assert stored["messages"] == 4  # user, assistant tool call, tool result, answer


def test_session_continues_with_its_history(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("Nice to meet you, Ada.")
    llm_emulator.reply_text("You are Ada.")
    assert cli("run", "-s", "chat-1", "-e", "I am Ada").returncode == 0
    second = cli("run", "-s", "chat-1", "-e", "who am I?")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "You are Ada."
    history = [(m["role"], m["content"]) for m in llm_emulator.requests[1].json["messages"][1:]]
    assert history == [
        ("user", "I am Ada"),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "who am I?"),
    ]
    assert [s["id"] for s in sessions(cli)] == ["chat-1"]


def test_message_from_standard_input(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(lambda body: "echo: " + body["messages"][-1]["content"])
    done = cli("run", "-e", "-", stdin="hello from a pipe")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "echo: hello from a pipe"


def test_rejected_key_is_a_clear_error_not_a_trace(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(401, "Incorrect API key provided")
    done = cli("run", "-e", "hi")
    assert done.returncode == 1
    assert done.stderr.lstrip().startswith("❌")
    assert "OPENAI_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    assert "test-key" not in done.stderr + done.stdout


def test_missing_key_explains_how_to_fix_it(make_cli: Any, llm_emulator: LlmEmulator) -> None:
    cli = make_cli(None)
    cli.write_config(f'[database]\nurl = "sqlite+aiosqlite:///{cli.home / "m.db"}"\n')
    done = cli("run", "-e", "hi")
    assert done.returncode == 1
    assert "❌" in done.stderr
    assert "OPENAI_API_KEY" in done.stderr
    assert "ollama" in done.stderr.lower()
    assert "Traceback" not in done.stderr
    assert llm_emulator.requests == []


def test_corrupt_config_names_the_file(cli: Cli) -> None:
    cli.write_config("[agent\nprovider = 1\n")
    done = cli("run", "-e", "hi")
    assert done.returncode == 2
    assert f"❌ {cli.config}: not valid TOML" in done.stderr
    assert "Traceback" not in done.stderr


def test_round_limit_stops_and_says_so(make_cli: Any, llm_emulator: LlmEmulator) -> None:
    cli = make_cli(llm_emulator, "max_tool_rounds = 2")
    for _ in range(3):
        llm_emulator.reply_tool_calls([("system_run", {"command": "echo again"})])
    done = cli("run", "-e", "loop forever")
    assert done.returncode == 0, done.stderr
    assert "stopped after 2 tool rounds" in done.stdout
    assert len(llm_emulator.requests) == 3
    [stored] = sessions(cli)
    assert stored["messages"] == 1 + 2 * 2 + 1  # user, 2 x (call + result), notice


def test_malformed_arguments_hanging_tool_and_huge_output_are_survivable(
    make_cli: Any, llm_emulator: LlmEmulator
) -> None:
    cli = make_cli(llm_emulator)
    llm_emulator.reply_tool_calls([("system_run", "{not json")])
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 60", "timeout": 0.5})])
    llm_emulator.reply_tool_calls(
        [("system_run", {"command": "head -c 200000 /dev/zero | tr '\\0' x"})]
    )
    llm_emulator.reply_text("survived")
    done = cli("run", "-e", "stress the tools")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "survived"
    malformed, hung, huge = (tool_outputs(r.json)[-1] for r in llm_emulator.requests[1:4])
    assert "JSON" in malformed
    assert "timed out" in hung
    assert "truncated" in huge
    assert len(huge) < 11_000
    [stored] = sessions(cli)
    assert stored["messages"] == 1 + 3 * 2 + 1


def test_skill_from_the_workspace_runs_as_a_tool(make_cli: Any, llm_emulator: LlmEmulator) -> None:
    cli = make_cli(llm_emulator)
    cli.env["OPENPISTA_WORKSPACE"] = str(REPO_ROOT / "skills")
    llm_emulator.reply_tool_calls([("skill_word-stats", {"text": "one two two"})])
    llm_emulator.reply(echo_last_tool_output)
    done = cli("run", "-e", "count the words in: one two two")
    assert done.returncode == 0, done.stderr
    assert '"words": 3' in done.stdout
    system_prompt = llm_emulator.requests[0].json["messages"][0]["content"]
    assert "word-stats" in system_prompt


def test_broken_skill_is_a_warning_and_the_run_goes_on(
    make_cli: Any, llm_emulator: LlmEmulator
) -> None:
    cli = make_cli(llm_emulator)
    broken = cli.home / "workspace" / "broken"
    broken.mkdir()
    (broken / "SKILL.md").write_bytes(b"---\nname: [unclosed\n---\n\xff\xfe")
    llm_emulator.reply_text("fine")
    done = cli("run", "-e", "hi")
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr
    assert "SKILL.md" in done.stderr
    assert done.stdout.strip() == "fine"


def test_model_test_and_list(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("pong", delay=0.3)
    tested = cli("model", "test")
    assert tested.returncode == 0, tested.stderr
    # Start-up (importing litellm) is reported apart from the request's own round trip.
    timing = re.search(
        r"✓ openai/gpt-4o-mini answered in (\d+\.\d\d) s "
        r"\(request round trip; start-up (\d+\.\d\d) s not counted\): pong$",
        tested.stdout.splitlines()[0],
    )
    assert timing is not None, tested.stdout
    assert float(timing[1]) >= 0.3  # the emulator's delay is part of the round trip
    listed = cli("model", "list", "--json")
    rows = {row["provider"]: row for row in json.loads(listed.stdout)}
    assert {"openai", "anthropic", "together", "ollama", "openrouter", "custom"} <= set(rows)
    assert rows["openai"]["current"] is True
    assert rows["openai"]["key"] == "key in config"


def test_model_test_reports_an_unknown_model(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(404, "The model `nope` does not exist")
    done = cli("model", "test", "nope")
    assert done.returncode == 1
    assert "❌" in done.stderr
    assert "nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_plugins_lists_builtins_with_what_they_registered(cli: Cli) -> None:
    done = cli("plugins", "--json")
    assert done.returncode == 0, done.stderr
    reports = {r["name"]: r for r in json.loads(done.stdout)}
    assert reports["tools"]["registered"]["tools"] == ["system.run"]
    assert "openai" in reports["providers"]["registered"]["providers"]
    assert reports["skills"]["registered"]["skill_runners"] == ["subprocess"]
    assert all(r["builtin"] and not r["errors"] for r in reports.values())


def test_version_and_help() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "openpista.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert version.returncode == 0
    assert version.stdout.startswith("openpista, version ")


def test_help_does_not_import_heavy_libraries() -> None:
    """Every installed plugin adds its commands to --help without importing its SDK."""
    code = (
        "import sys\n"
        "from openpista.cli.main import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='openpista')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('litellm', 'openai', 'sqlalchemy', 'pydantic', 'httpx', 'starlette', 'uvicorn',\n"
        "         'aiogram', 'aioquic', 'wasmtime', 'docker', 'playwright', 'pyautogui', 'mss')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "run " in done.stdout
    assert "plugins " in done.stdout
    assert "HEAVY []" in done.stdout


def test_model_list_remote_skips_providers_without_a_key_and_goes_on(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    # openrouter comes after anthropic, together and ollama in the registry's order.
    cli.write_config(
        cli.config.read_text()
        + "\n[providers.openrouter]\n"
        + f'api_key = "or-key"\nbase_url = "{llm_emulator.openai_base_url}"\n'
    )
    done = cli("model", "list", "--remote", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["provider"]: row for row in json.loads(done.stdout)}
    assert rows["openai"]["models"] == sorted(llm_emulator.models)
    assert rows["openrouter"]["models"] == sorted(llm_emulator.models)
    assert "anthropic" not in rows
    notes = [line for line in done.stderr.splitlines() if line.startswith("skipped anthropic:")]
    assert len(notes) == 1
    assert "ANTHROPIC_API_KEY" in notes[0]
    assert "Traceback" not in done.stderr
    only = cli("model", "list", "--remote", "-p", "anthropic")
    assert only.returncode == 1
    assert only.stderr.startswith("❌ anthropic:")


def test_run_uses_a_plain_json_answer_and_never_prints_an_empty_one_silently(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply(TextReply("answered without a stream", unstreamed=True))
    done = cli("run", "-s", "plain", "-e", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answered without a stream\n"
    [stored] = sessions(cli)
    assert stored["messages"] == 2
    llm_emulator.reply_text("")
    empty = cli("run", "-s", "plain", "-e", "and now?")
    assert empty.returncode == 1
    assert empty.stdout == ""
    assert empty.stderr.startswith("❌ openai sent an empty answer")
    assert "Traceback" not in empty.stderr


def test_the_memory_database_is_private_after_a_real_run(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("stored privately")
    done = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$0" "$@"', str(OPENPISTA), "run", "-e", "hello"],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    database = cli.home / "memory.db"
    files = [p for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm")) if p.exists()]
    assert database in files
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


def test_an_in_process_run_remembers_a_note_for_the_local_user(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    import getpass

    llm_emulator.reply_tool_calls([("memory_remember", {"note": "likes green tea"})])
    llm_emulator.reply_text("noted")
    done = cli("--no-daemon", "run", "-e", "remember that I like green tea")
    assert done.returncode == 0, done.stderr
    assert "noted" in done.stdout
    shown = cli("memory", "show", f"local:{getpass.getuser()}", "--json")  # every terminal
    assert shown.returncode == 0, shown.stderr
    assert "likes green tea" in shown.stdout


def test_an_in_process_run_is_refused_in_cluster_mode(cli: Cli, llm_emulator: LlmEmulator) -> None:
    with cli.config.open("a") as config:
        config.write("\n[cluster]\nenabled = true\n")
    done = cli("--no-daemon", "run", "-e", "hello")
    assert done.returncode == 1
    assert done.stderr.startswith("❌ [cluster] is enabled: a turn runs only in a replica")
    assert "Traceback" not in done.stderr
    assert llm_emulator.requests == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


@pytest.mark.parametrize(
    "command", [["run", "-e", "hello"], ["sessions"], ["start", "--no-terminal"]]
)
@pytest.mark.parametrize("failure", ["postgres-down", "garbage-file", "uncreatable-path"])
def test_a_database_that_cannot_be_opened_is_one_clear_line(
    cli: Cli, tmp_path: Path, command: list[str], failure: str
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 40)
    url, shown, fix = {
        "postgres-down": (
            f"postgresql+asyncpg://agent:pw-s3cret@127.0.0.1:{_closed_port()}/openpista",
            "postgresql+asyncpg://agent:***@127.0.0.1:",
            "is the PostgreSQL server running at 127.0.0.1:",
        ),
        "garbage-file": (
            f"sqlite+aiosqlite:///{garbage}",
            f"sqlite+aiosqlite:///{garbage}",
            f"{garbage} is not an SQLite database",
        ),
        "uncreatable-path": (  # the parent "directory" is a file
            f"sqlite+aiosqlite:///{garbage}/state/memory.db",
            f"sqlite+aiosqlite:///{garbage}/state/memory.db",
            "name a file in a directory you can write to",
        ),
    }[failure]
    cli.env["OPENPISTA_DATABASE_URL"] = url
    done = cli(*command, timeout=60)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("❌ ")
    assert shown in line
    assert f"Fix: {fix}" in line
    assert "[database] url (or $OPENPISTA_DATABASE_URL)" in line
    assert "pw-s3cret" not in line


def test_sessions_show_the_chat_each_session_belongs_to(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("hello from the daemon")
    served = cli("start", stdin="hi there\n", timeout=120)
    assert served.returncode == 0, served.stderr
    llm_emulator.reply_text("hello from run")
    assert cli("run", "-s", "by-run", "-e", "hi").returncode == 0
    rows = {row["id"]: row for row in sessions(cli)}
    assert rows["by-run"]["channels"] == []
    [daemon] = [row for sid, row in rows.items() if sid != "by-run"]
    [chat] = daemon["channels"]
    assert chat.startswith("cli:")
    listing = cli("sessions").stdout.splitlines()
    assert listing[0].split() == ["SESSION", "CHAT", "UPDATED", "MESSAGES", "TITLE"]
    chat_column = listing[0].index("CHAT")
    lines = {line.split()[0]: line for line in listing[1:]}
    assert lines[daemon["id"]][chat_column:].startswith(f"{chat} ")
    assert lines["by-run"][chat_column:].startswith("- ")


def test_run_applies_the_policy_deny_rules_and_asks_on_the_terminal(
    cli: Cli, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    denied, asked = tmp_path / "denied", tmp_path / "asked"
    cli.write_config(
        cli.config.read_text()
        + "\n[policy]\nrules = [\n"
        + f'  {{tool = "system.run", command = "touch {denied}", action = "deny"}},\n'
        + '  {tool = "system.run", command = "touch *", action = "ask"},\n]\n'
    )
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {denied}"})])
    llm_emulator.reply(echo_last_tool_output)
    done = cli("run", "-e", "make the file")
    assert done.returncode == 0, done.stderr
    assert not denied.exists()
    assert "denied" in tool_outputs(llm_emulator.requests[-1].json)[-1].lower()

    for answer, created in (("n", False), ("y", True)):
        llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {asked}"})])
        llm_emulator.reply(echo_last_tool_output)
        done = cli("run", "-e", "make the other file", stdin=answer + "\n")
        assert done.returncode == 0, done.stderr
        assert "🔐 Approval needed" in done.stderr
        assert "Run it? [y/N]" in done.stderr
        assert asked.exists() is created

    asked.unlink()
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {asked}"})])
    llm_emulator.reply(echo_last_tool_output)
    done = cli("run", "-e", "and again", stdin="")  # no terminal answer: denied
    assert done.returncode == 0, done.stderr
    assert not asked.exists()


def test_sessions_shows_a_sessions_decisions_and_deletes_it(
    cli: Cli, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    cli.write_config(
        cli.config.read_text()
        + '\n[policy]\nrules = [{tool = "system.run", command = "rm *", action = "deny"}]\n'
    )
    llm_emulator.reply_tool_calls([("system_run", {"command": f"rm {tmp_path}/x"})])
    llm_emulator.reply_text("could not")
    assert cli("run", "-s", "audit-1", "-e", "remove it").returncode == 0

    shown = cli("sessions", "decisions", "audit-1", "--json")
    assert shown.returncode == 0, shown.stderr
    [decision] = json.loads(shown.stdout)
    assert (decision["channel_id"], decision["tool"]) == ("cli:run", "system.run")
    assert (decision["action"], decision["decided_by"]) == ("deny", "policy")
    assert decision["arguments"] == {"command": f"rm {tmp_path}/x"}
    assert "system.run" in cli("sessions", "decisions", "audit-1").stdout

    missing = cli("sessions", "decisions", "no-such-session")
    assert missing.returncode == 1
    assert missing.stderr.startswith("❌")
    assert "Traceback" not in missing.stderr

    refused = cli("sessions", "delete", "audit-1", stdin="n\n")
    assert refused.returncode == 1
    assert [s["id"] for s in sessions(cli)] == ["audit-1"]
    deleted = cli("sessions", "delete", "audit-1", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "✓ deleted session audit-1" in deleted.stdout
    assert sessions(cli) == []
    again = cli("sessions", "delete", "audit-1", "--yes")
    assert again.returncode == 1
    assert "no session 'audit-1'" in again.stderr
