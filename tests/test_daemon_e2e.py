"""End to end: ``openpista start`` as a real process, driven through its terminal channel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import DEADLINE, Daemon
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.e2e


def pid_file(cli: Cli) -> Path:
    return cli.home / ".openpista" / "openpista.pid"


def wait_running(cli: Cli, daemon: Daemon) -> dict[str, Any]:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        status = cli("status", "--json")
        if status.returncode == 0:
            info: dict[str, Any] = json.loads(status.stdout)
            return info
        assert daemon.process.poll() is None, daemon.output()
        time.sleep(0.2)
    raise AssertionError("the daemon never reported running")


def test_piped_conversation_answers_and_exits_at_end_of_input(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply(lambda body: "echo: " + body["messages"][-1]["content"])
    done = subprocess.run(
        [str(OPENPISTA), "start"],
        input="hello daemon\n",
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "echo: hello daemon" in done.stdout
    assert not pid_file(cli).exists()


def test_lifecycle_status_second_start_and_sigterm(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    llm_emulator.reply_text("pong")
    daemon = daemons(cli)
    info = wait_running(cli, daemon)
    assert info["pid"] == daemon.process.pid
    assert info["channels"] == ["cli"]
    assert int(pid_file(cli).read_text()) == daemon.process.pid
    second = cli("start", stdin="")
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert str(daemon.process.pid) in second.stderr
    daemon.send("ping")
    daemon.wait_for("pong")
    assert daemon.stop() == 0
    assert not pid_file(cli).exists()
    stopped = cli("status")
    assert stopped.returncode == 3
    assert "not running" in stopped.stdout


def test_stale_pid_file_is_replaced(cli: Cli, llm_emulator: LlmEmulator) -> None:
    stale = pid_file(cli)
    stale.parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale.write_text(f"{dead.pid}\n")
    llm_emulator.reply_text("fresh start")
    done = cli("start", stdin="hi\n")
    assert done.returncode == 0, done.stderr
    assert "fresh start" in done.stdout


def test_sigterm_mid_turn_leaves_a_consistent_history(
    make_cli: Callable[..., Cli], llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    cli = make_cli(llm_emulator)
    cli.config.write_text(cli.config.read_text() + "\n[gateway]\nshutdown_deadline = 0.5\n")
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 30"})])
    daemon = daemons(cli)
    daemon.send("sleep for a while")
    daemon.wait_for("⚙ system.run")
    assert daemon.stop() == 0, daemon.output()
    [session] = json.loads(cli("sessions", "--json").stdout)
    assert session["messages"] == 2  # the user's message and the call begun (stored first)
    llm_emulator.reply_text("back again")
    again = cli("start", stdin="still there?\n")
    assert again.returncode == 0, again.stderr
    assert "back again" in again.stdout
    history = llm_emulator.requests[-1].json["messages"][1:]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "user"]
    [call] = history[1]["tool_calls"]
    assert history[2]["tool_call_id"] == call["id"]  # no tool call without its result:
    assert "interrupted" in history[2]["content"]  # the LLM is told it may have run
    assert [history[0]["content"], history[3]["content"]] == ["sleep for a while", "still there?"]


def test_restart_keeps_the_terminal_on_its_session(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("Hi Ada")
    llm_emulator.reply_text("You are Ada")
    assert cli("start", stdin="I am Ada\n").returncode == 0
    second = cli("start", stdin="who am I?\n")
    assert "You are Ada" in second.stdout
    history = [m["content"] for m in llm_emulator.requests[1].json["messages"][1:]]
    assert history == ["I am Ada", "Hi Ada", "who am I?"]


def test_cron_message_is_answered_in_its_channel(
    make_cli: Callable[..., Cli], llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    cli = make_cli(llm_emulator)
    cli.config.write_text(
        cli.config.read_text()
        + '\n[[cron]]\nname = "tick"\nschedule = "* * * * * *"\n'
        + 'channel = "cli:local"\nmessage = "cron ping"\n'
    )
    llm_emulator.reply(lambda body: "answer to " + body["messages"][-1]["content"])
    daemon = daemons(cli)
    daemon.wait_for("answer to cron ping")
    assert daemon.stop() == 0
    listing = cli("cron", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert "tick" in listing.stdout


def test_first_run_without_a_provider_explains_the_fix(make_cli: Callable[..., Cli]) -> None:
    cli = make_cli(None)
    cli.config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{cli.home / "m.db"}"\n')
    done = cli("start", stdin="")
    assert done.returncode == 1
    assert "OPENAI_API_KEY" in done.stdout + done.stderr
    assert "openpista init" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not pid_file(cli).exists()


def test_init_writes_a_private_config_that_works(make_cli: Callable[..., Cli]) -> None:
    cli = make_cli(None)
    cli.config.unlink(missing_ok=True)
    done = cli("init", "--yes", "--provider", "ollama", "--model", "llama3.2")
    assert done.returncode == 0, done.stderr
    assert os.stat(cli.config).st_mode & 0o777 == 0o600
    text = cli.config.read_text()
    assert 'provider = "ollama"' in text
    assert "[channels.web]" not in text  # channels only when asked for: test_init_channels.py
    again = cli("init", "--yes")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    listed = cli("model", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    current = [row["provider"] for row in json.loads(listed.stdout) if row["current"]]
    assert current == ["ollama"]


def test_a_misconfigured_channel_is_left_out_and_the_others_serve(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web"
    cli.write_config(
        cli.config.read_text()
        + '\n[channels.web]\nenabled = true\nport = "eighty"\ntoken = "secret-token"\n'
        + "\n[channels.pigeon]\nenabled = true\n"
    )
    llm_emulator.reply_text("still answering")
    done = cli("start", stdin="anyone?\n")
    assert done.returncode == 0, done.stderr
    assert "still answering" in done.stdout
    crosses = [line for line in done.stderr.splitlines() if line.startswith("❌")]
    assert len(crosses) == 2, done.stderr
    web, pigeon = sorted(crosses, key=lambda line: "pigeon" in line)
    assert web.startswith("❌ channel web is not served: [channels.web] port: ")
    assert "secret-token" not in done.stderr
    assert "no loaded plugin provides it" in pigeon
    assert "Traceback" not in done.stderr


def test_sigterm_tells_the_chat_what_was_cancelled_and_refused(
    make_cli: Callable[..., Cli], llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    cli = make_cli(llm_emulator)
    cli.config.write_text(cli.config.read_text() + "\n[gateway]\nshutdown_deadline = 2\n")
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 30"})])
    daemon = daemons(cli)
    daemon.send("sleep for a while")
    daemon.wait_for("⚙ system.run")
    daemon.process.send_signal(signal.SIGTERM)
    daemon.wait_for("openpista is stopping")
    daemon.send("are you there?")
    assert daemon.process.wait(timeout=DEADLINE) == 0, daemon.output()
    out = daemon.output()
    assert "❌ openpista is restarting or stopping and did not take this message" in out, out
    assert "cancelled at the shutdown deadline ([gateway] shutdown_deadline = 2 s)" in out
    assert len(llm_emulator.requests) == 1


def test_the_daemon_names_its_bound_addresses_and_says_when_it_is_ready(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web"
    cli.write_config(
        cli.config.read_text() + '\n[channels.web]\nenabled = true\nport = 0\ntoken = "t0k3n"\n'
    )
    daemon = daemons(cli, "--no-terminal")
    line = daemon.wait_for("the web channel listens on http://127.0.0.1:")
    url = line.rsplit(" ", 1)[1].strip()
    assert not url.endswith(":0")
    daemon.wait_for("openpista is ready: openai/gpt-4o-mini")
    assert httpx.get(f"{url}/api/health").json() == {"ok": True, "ready": True}
    info = wait_running(cli, daemon)
    assert info["ready"] is True
    assert info["channels"] == ["web"]
    assert info["listeners"] == [{"name": "the web channel", "url": url}]
    text = cli("status")
    assert text.returncode == 0
    assert f"  the web channel: {url}" in text.stdout.splitlines()
    assert "ready" in text.stdout.splitlines()[0]
    assert daemon.stop() == 0
