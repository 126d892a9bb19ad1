"""End to end: the installed ``openpista tui`` in a pseudo-terminal against the LLM emulator.

The terminal is the stdlib's ``pty``; what the application draws is replayed on a small
screen model (cursor moves, erases, text), because prompt-toolkit redraws only the cells
that changed and a raw byte search would miss text split by those skips.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.e2e

ROWS, COLS = 30, 100
DEADLINE = 60.0  # generous: the first turn imports litellm
_TOKEN = re.compile(
    r"\x1b\[([?>=]?)([0-9;]*)([@-~])"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC (window title)
    r"|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEM]"  # charset selection, keypad modes, misc
    r"|[\r\n\x08\x07]|[^\x1b\r\n\x08\x07]",
    re.DOTALL,
)


class Screen:
    """Just enough of a VT100 to read what a full-screen application shows."""

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.cells = [[" "] * cols for _ in range(rows)]
        self.y = self.x = 0

    def feed(self, data: str) -> None:
        for match in _TOKEN.finditer(data):
            token = match.group(0)
            if match.group(3) is not None:
                self._csi(match.group(1), match.group(2), match.group(3))
            elif token == "\r":
                self.x = 0
            elif token == "\n":
                self._line_feed()
            elif token == "\x08":
                self.x = max(0, self.x - 1)
            elif len(token) == 1 and token >= " ":
                self.cells[self.y][min(self.x, self.cols - 1)] = token
                self.x = min(self.x + 1, self.cols - 1)

    def _line_feed(self) -> None:
        if self.y == self.rows - 1:
            self.cells = [*self.cells[1:], [" "] * self.cols]
        else:
            self.y += 1

    def _csi(self, private: str, params: str, final: str) -> None:
        if private:
            return  # modes (cursor visibility, alternate screen, bracketed paste)
        numbers = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(1, numbers[0]) if numbers else 1
        if final == "A":
            self.y = max(0, self.y - n)
        elif final == "B":
            self.y = min(self.rows - 1, self.y + n)
        elif final == "C":
            self.x = min(self.cols - 1, self.x + n)
        elif final == "D":
            self.x = max(0, self.x - n)
        elif final in "Hf":
            row = numbers[0] if numbers else 1
            col = numbers[1] if len(numbers) > 1 else 1
            self.y = min(self.rows - 1, max(1, row) - 1)
            self.x = min(self.cols - 1, max(1, col) - 1)
        elif final == "J":
            mode = numbers[0] if numbers else 0
            if mode in (2, 3):
                self.cells = [[" "] * self.cols for _ in range(self.rows)]
            elif mode == 0:
                self.cells[self.y][self.x :] = [" "] * (self.cols - self.x)
                for row in range(self.y + 1, self.rows):
                    self.cells[row] = [" "] * self.cols
        elif final == "K":
            mode = numbers[0] if numbers else 0
            if mode == 0:
                self.cells[self.y][self.x :] = [" "] * (self.cols - self.x)
            elif mode == 2:
                self.cells[self.y] = [" "] * self.cols

    def text(self) -> str:
        return "\n".join("".join(row).rstrip() for row in self.cells)


class Terminal:
    """``openpista ARGS`` (or ``command``) running on the slave side of a pseudo-terminal."""

    def __init__(self, cli: Cli, *args: str, command: Sequence[str] = (str(OPENPISTA),)) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**cli.env, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
        self.process = subprocess.Popen(
            [*command, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.screen = Screen(ROWS, COLS)
        self.raw = b""

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the process closed the terminal
            return
        self.raw += chunk
        self.screen.feed(chunk.decode("utf-8", errors="replace"))

    def wait_for(self, needle: str, timeout: float = DEADLINE) -> str:
        """Read the terminal until ``needle`` is on screen; fail with the screen if not."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.screen.text():
                return self.screen.text()
            if self.process.poll() is not None:
                self._pump(0.1)
                break
            self._pump(0.1)
        if needle in self.screen.text():
            return self.screen.text()
        raise AssertionError(f"{needle!r} not on screen:\n{self.screen.text()}")

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_exit(self, timeout: float = 20) -> int:
        end = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < end:
            self._pump(0.1)
        return self.process.wait(timeout=1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminal(cli: Cli) -> Iterator[Terminal]:
    term = Terminal(cli, "tui")
    yield term
    term.close()


def test_tui_chats_with_the_agent_and_quits(
    terminal: Terminal, cli: Cli, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("Bonjour from the emulator, 4711 times.", chunk_size=5)

    home = terminal.wait_for("+ new session")
    assert "openai/gpt-4o-mini" in home
    assert "key in config" in home
    terminal.send("n")
    terminal.wait_for("/help lists the commands")
    terminal.send("hello tui\r")
    screen = terminal.wait_for("Bonjour from the emulator, 4711 times.")
    assert "you › hello tui" in screen
    terminal.send("/quit\r")
    assert terminal.wait_exit() == 0

    assert llm_emulator.requests[0].json["messages"][-1] == {"role": "user", "content": "hello tui"}
    listing = cli("sessions", "--json")
    assert listing.returncode == 0, listing.stderr
    [stored] = json.loads(listing.stdout)
    assert stored["messages"] == 2
    assert b"Traceback" not in terminal.raw


def test_chat_commands_are_the_gateway_s_and_model_switches_one_session(
    terminal: Terminal, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("answered by the switched model")
    llm_emulator.reply_text("answered by the default model")
    terminal.wait_for("+ new session")
    terminal.send("n")
    terminal.wait_for("/help lists the commands")
    terminal.send("/model openai/gpt-4o\r")
    terminal.wait_for("model: openai/gpt-4o (this session)")
    terminal.send("first\r")
    terminal.wait_for("answered by the switched model")
    terminal.send("/clear\r")
    terminal.wait_for("new session ")
    terminal.send("second\r")
    terminal.wait_for("answered by the default model")
    terminal.send("/help\r")
    terminal.wait_for("/usage")  # the gateway's table, then the TUI's own commands
    terminal.wait_for("/login [PROVIDER]")
    terminal.send("/quit\r")
    assert terminal.wait_exit() == 0
    assert [r.json["model"] for r in llm_emulator.requests] == ["gpt-4o", "gpt-4o-mini"]
    assert b"Traceback" not in terminal.raw


def test_login_steps_aside_for_the_auth_picker_and_comes_back(
    terminal: Terminal, cli: Cli, llm_emulator: LlmEmulator
) -> None:
    terminal.wait_for("+ new session")
    terminal.send("n")
    terminal.wait_for("/help lists the commands")
    terminal.send("/login\r")
    terminal.wait_for("Provider (number, name or part of a name)")
    terminal.send("tog\r")  # part of a name is enough
    terminal.wait_for("together API key")
    terminal.send("tg-secret-from-the-tui\r")
    screen = terminal.wait_for("now answering with openai/gpt-4o-mini")
    assert "tg-secret-from-the-tui" not in screen, "the key is typed hidden"
    stored = cli("auth", "status", "--json")
    rows = {row["provider"]: row for row in json.loads(stored.stdout)}
    assert rows["together"]["source"] == "stored"
    terminal.send("/quit\r")
    assert terminal.wait_exit() == 0
    assert b"Traceback" not in terminal.raw


def _store_reports(cli: Cli, task_id: str, *reports: dict[str, object]) -> None:
    """Store worker reports in the TUI's database, as a daemon's endpoint would."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from openpista.memory import WorkerLog
    from openpista.memory.worker_reports import token_digest

    async def store() -> None:
        worker_log = await WorkerLog.open(f"sqlite+aiosqlite:///{cli.home / 'memory.db'}")
        now = datetime.now(UTC)
        task = {
            "task_id": task_id,
            "session_id": "s1",
            "channel_id": "telegram:42",
            "token_sha256": token_digest("x"),
            "created_at": now,
            "expires_at": now + timedelta(minutes=5),
        }
        for number, fields in enumerate(reports):
            body = {"v": 1, "task_id": task_id, "report_id": f"r{number}", **fields}
            await worker_log.store_report(task, body, now + timedelta(seconds=number))
        await worker_log.close()

    asyncio.run(store())


def test_the_worker_dashboard_shows_runs_and_updates_live(cli: Cli) -> None:
    """Attached to a daemon serving ``[workers]``: a report the daemon accepts reaches the
    open dashboard through its worker feed (nothing polls the database)."""
    import httpx

    cli.write_config(
        cli.config.read_text() + '\n[workers]\nenabled = true\nport = 0\napi_token = "t"\n'
    )
    _store_reports(cli, "cafe0001", {"kind": "started"}, {"kind": "finished", "exit_code": 0})
    _store_reports(cli, "cafe0002", {"kind": "failed", "exit_code": 3})
    _store_reports(cli, "cafe0003", {"kind": "progress", "log": ["step one"], "percent": 40})
    daemon = Daemon(cli)
    terminal: Terminal | None = None
    try:
        line = daemon.wait_for("worker endpoint listens on http://127.0.0.1:")
        report_url = line.rsplit(" ", 1)[1].strip() + "/api/worker-report"
        daemon.wait_for("openpista is ready")
        terminal = Terminal(cli, "tui")
        terminal.wait_for("w workers")
        terminal.send("w")
        screen = terminal.wait_for("Failed (1)")
        assert "Active (1)" in screen
        assert "Completed (1)" in screen
        assert re.search(r"cafe0001\s+finished\s+1\.0 s\s+exit 0\s+telegram:42", screen), screen
        assert re.search(r"cafe0002\s+failed\s+0\.0 s\s+exit 3", screen), screen
        assert re.search(r"cafe0003\s+running\s+40%", screen), screen
        assert "step one" in screen  # the selected (first) run's log lines
        # Live: a report the daemon stores while the dashboard is open appears at once.
        live = {"v": 1, "task_id": "cafe0003", "report_id": "live", "kind": "progress"}
        answer = httpx.post(
            report_url,
            json={**live, "log": ["step two, live"], "percent": 80},
            headers={"Authorization": "Bearer x"},  # the stored task's credential
        )
        assert answer.json()["result"] == "accepted", answer.text
        screen = terminal.wait_for("step two, live")
        assert re.search(r"cafe0003\s+running\s+80%", screen), screen
        terminal.send("\x1b")
        terminal.wait_for("+ new session")
        terminal.send("q")
        assert terminal.wait_exit() == 0
        assert b"Traceback" not in terminal.raw
    finally:
        if terminal is not None:
            terminal.close()
        daemon.kill()


# -- attached to a running daemon -----------------------------------------------------------

# Runs the CLI like the console script and writes the modules it loaded when it exits.
WRAPPER = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["openpista", *sys.argv[2:]]
from openpista.cli.main import main
main()
"""
HEAVY = {"litellm", "sqlalchemy", "aiosqlite", "alembic", "pydantic_settings", "openai"}


@pytest.fixture
def daemon(cli: Cli) -> Iterator[Daemon]:
    cli.write_config(cli.config.read_text() + '\n[policy]\nlocal = "ask"\n')
    started = Daemon(cli)  # its terminal channel reads the test's pipe, left empty
    started.wait_for("openpista is ready")
    yield started
    started.kill()


def traced_terminal(cli: Cli, modules: Path, *args: str) -> Terminal:
    """``openpista ARGS`` in a terminal; the modules it imported land in ``modules``."""
    return Terminal(cli, *args, command=(sys.executable, "-c", WRAPPER, str(modules)))


def imported(modules: Path) -> set[str]:
    return {name.split(".")[0] for name in json.loads(modules.read_text())}


def test_the_tui_attached_to_a_daemon_chats_there_and_imports_no_heavy_module(
    cli: Cli, llm_emulator: LlmEmulator, daemon: Daemon, tmp_path: Path
) -> None:
    llm_emulator.reply_text("noted: 4711")
    stored = cli("run", "-s", "earlier", "-e", "remember 4711")  # through the daemon too
    assert stored.returncode == 0, stored.stderr
    modules = tmp_path / "modules.json"
    terminal = traced_terminal(cli, modules, "tui")
    try:
        terminal.wait_for("+ new session")
        terminal.send("j\r")  # the newest session: its history comes from the daemon
        screen = terminal.wait_for("noted: 4711")
        assert "you › remember 4711" in screen
        # A turn with a tool: the daemon's [policy] local = "ask" asks here.
        llm_emulator.reply_tool_calls([("system_run", {"command": "echo from-the-daemon"})])
        llm_emulator.reply_text("the tool ran in the daemon")
        terminal.send("run the tool\r")
        terminal.wait_for("Approval needed")
        terminal.send("/approve\r")
        screen = terminal.wait_for("the tool ran in the daemon")
        assert "✓ system.run: exit code: 0" in screen
        # Ctrl-C cancels the turn in the daemon: the session is free for the next one.
        llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 987"})])
        terminal.send("wait a long time\r")
        terminal.wait_for("Approval needed")
        terminal.send("/approve\r")
        terminal.wait_for('⚙ system.run {"command": "sleep 987"}')
        terminal.send("\x03")
        terminal.wait_for("❌ cancelled: the turn was stopped")
        llm_emulator.reply_text("free again")
        terminal.send("still there?\r")
        terminal.wait_for("free again")
        terminal.send("/model openai/gpt-4o\r")
        terminal.wait_for("model: openai/gpt-4o (this session)")
        # The daemon goes away: one line, and the TUI still leaves cleanly.
        daemon.kill()
        terminal.wait_for("❌ the daemon stopped")
        terminal.send("/quit\r")
        assert terminal.wait_exit() == 0
    finally:
        terminal.close()
    assert b"Traceback" not in terminal.raw
    assert not imported(modules) & HEAVY, sorted(imported(modules) & HEAVY)
    assert [r.json["model"] for r in llm_emulator.requests][-1] == "gpt-4o-mini"


def test_no_daemon_runs_the_tui_here_even_while_a_daemon_runs(
    cli: Cli, daemon: Daemon, tmp_path: Path
) -> None:
    modules = tmp_path / "modules.json"
    terminal = traced_terminal(cli, modules, "--no-daemon", "tui")
    try:
        terminal.wait_for("+ new session")
        terminal.send("q")
        assert terminal.wait_exit() == 0
    finally:
        terminal.close()
    assert "sqlalchemy" in imported(modules)  # the in-process path really ran here
