"""End to end: what the shell tool's commands inherit from, and how long they outlive, a real
``openpista run`` / ``openpista start`` process (LLM emulator, real bash, SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.emulator import LlmEmulator
from openpista_testing.processes import is_running, read_pids

pytestmark = pytest.mark.e2e

DEADLINE = 60.0
SECRETS = {
    "OPENAI_API_KEY": "sk-secret-openai-4711",
    "TELEGRAM_BOT_TOKEN": "123:secret-telegram-4711",
    "WHATSAPP_APP_SECRET": "secret-whatsapp-4711",
    "OPENPISTA_WEB__TOKEN": "secret-web-4711",
}


def poll(condition: Any, seconds: float = DEADLINE) -> bool:
    """Poll ``condition()`` (other processes cannot be awaited), bounded by ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left is killed afterwards."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE)


def sleeper(pids: Path) -> dict[str, str]:
    """A system.run call whose command leaves a grandchild (`sleep`) and writes both PIDs."""
    return {"command": f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait"}


def assert_dies_with(process: subprocess.Popen[bytes], pids: Path) -> None:
    assert poll(lambda: len(read_pids(pids)) == 2), "the command never started"
    written = read_pids(pids)
    assert all(is_running(pid) for pid in written)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert poll(lambda: not any(is_running(pid) for pid in written)), (
        f"still running after openpista was killed: {[p for p in written if is_running(p)]}"
    )


def test_kill_9_of_openpista_run_kills_the_running_command(
    cli: Cli, llm_emulator: LlmEmulator, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pids = tmp_path / "pids"
    llm_emulator.reply_tool_calls([("system_run", sleeper(pids))])
    llm_emulator.reply_text("done")
    run = subprocess.Popen(
        [str(OPENPISTA), "run", "-e", "start a long job"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.append(run)
    assert_dies_with(run, pids)


def test_kill_9_of_the_daemon_kills_the_running_command(
    cli: Cli, llm_emulator: LlmEmulator, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pids = tmp_path / "pids"
    llm_emulator.reply_tool_calls([("system_run", sleeper(pids))])
    llm_emulator.reply_text("done")
    daemon = subprocess.Popen(
        [str(OPENPISTA), "start"],
        env=cli.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.append(daemon)
    assert daemon.stdin is not None
    daemon.stdin.write(b"start a long job\n")
    daemon.stdin.flush()
    assert_dies_with(daemon, pids)


def test_env_through_openpista_run_shows_the_llm_no_secret(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    cli.env.update(SECRETS, MY_VAR="passed on purpose")
    cli.write_config(cli.config.read_text() + '\n[tools]\nenv_passthrough = ["MY_VAR"]\n')
    llm_emulator.reply_tool_calls([("system_run", {"command": "env"})])
    llm_emulator.reply_text("that was the environment")

    done = cli("run", "-e", "show me your environment")

    assert done.returncode == 0, done.stderr
    (tool_output,) = [
        m["content"] for m in llm_emulator.requests[1].json["messages"] if m["role"] == "tool"
    ]
    assert "MY_VAR=passed on purpose" in tool_output
    assert "\nPATH=" in tool_output
    for name, value in SECRETS.items():
        assert name not in tool_output
        assert value not in tool_output
    stored = cli("sessions", "--json")
    assert stored.returncode == 0
    assert not any(value in stored.stdout for value in SECRETS.values())


def test_a_failing_command_is_shown_as_a_failure(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo partial; exit 3"})])
    llm_emulator.reply_text("it failed")
    done = cli("run", "-e", "run something that fails")
    assert done.returncode == 0, done.stderr
    assert "✗ system.run: exit code: 3" in done.stderr
    assert "✓ system.run" not in done.stderr
    (tool_output,) = [
        m["content"] for m in llm_emulator.requests[1].json["messages"] if m["role"] == "tool"
    ]
    assert tool_output == "exit code: 3\n--- stdout ---\npartial"
