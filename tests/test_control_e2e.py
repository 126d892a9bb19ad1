"""End to end: ``openpista run/sessions/status/send`` through a running daemon's control
socket, with real daemon and client processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import DEADLINE, Daemon
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.e2e

HEAVY = ("litellm", "sqlalchemy", "pydantic_settings", "pydantic", "aiosqlite")
# Runs the CLI like the console script and writes the modules it loaded when it exits.
WRAPPER = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["openpista", *sys.argv[2:]]
from openpista.cli.main import main
main()
"""


@pytest.fixture
def daemons() -> Iterator[Callable[[Cli], Daemon]]:
    started: list[Daemon] = []

    def start(cli: Cli) -> Daemon:
        daemon = Daemon(cli)
        started.append(daemon)
        wait_serving(cli, daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
    kill_processes("sleep 987")  # tool processes of daemons killed mid-turn


def control_socket(cli: Cli) -> Path:
    home = cli.env.get("OPENPISTA_HOME")
    return (Path(home) if home else cli.home / ".openpista") / "control.sock"


def wait_serving(cli: Cli, daemon: Daemon) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if control_socket(cli).exists() and cli("status").returncode == 0:
            return
        assert daemon.process.poll() is None, daemon.output()
        time.sleep(0.1)
    raise AssertionError("the daemon never served its control socket")


def attached(
    cli: Cli, *args: str, stdin: str | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``openpista ARGS``; return the finished process and the modules it imported."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as modules:
        done = subprocess.run(
            [sys.executable, "-c", WRAPPER, modules.name, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=cli.env,
            timeout=DEADLINE,
            check=False,
        )
        loaded = json.loads(modules.read())
    return done, {name.split(".")[0] for name in loaded}


def spawn(cli: Cli, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(OPENPISTA), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )


def wait_line(stream: Any, needle: str) -> str:
    """Read ``stream`` until a line contains ``needle`` (the process's own pipe)."""
    for line in stream:
        if needle in line:
            return str(line)
    raise AssertionError(f"{needle!r} never appeared")


def processes(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if entry.name.isdigit() and needle in command and "pytest" not in command:
            found.append(int(entry.name))
    return found


def kill_processes(needle: str) -> None:
    for pid in processes(needle):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def until(check: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while not (value := check()):
        assert time.monotonic() < end, "condition never became true"
        time.sleep(0.05)
    return value


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def read_frame(sock: socket.socket) -> dict[str, Any] | None:
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    answer: dict[str, Any] = json.loads(sock.recv(length, socket.MSG_WAITALL))
    return answer


def script_tool_round(emulator: LlmEmulator, answer: str) -> None:
    emulator.reply_tool_calls([("system_run", {"command": "echo tool says hi"})])
    emulator.reply_text(answer)


def test_run_in_the_daemon_prints_what_the_in_process_run_prints_and_imports_no_heavy_module(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    daemons(cli)
    assert stat.S_IMODE(control_socket(cli).stat().st_mode) == 0o600
    script_tool_round(llm_emulator, "All done: the tool said hi.")
    remote, modules = attached(cli, "run", "-s", "one", "-e", "say hi with a tool")
    assert remote.returncode == 0, remote.stderr
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    script_tool_round(llm_emulator, "All done: the tool said hi.")
    local, local_modules = attached(cli, "--no-daemon", "run", "-s", "two", "-e", "say hi")
    assert local.returncode == 0, local.stderr
    assert "sqlalchemy" in local_modules  # the in-process path really ran here
    assert remote.stdout == local.stdout == "All done: the tool said hi.\n"
    assert remote.stderr.replace("session: one", "") == local.stderr.replace("session: two", "")
    assert "⚙ system.run" in remote.stderr
    assert "✓ system.run: exit code: 0" in remote.stderr


def test_the_daemon_applies_its_local_policy_and_asks_approvals_on_the_client_terminal(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    cli.write_config(cli.config.read_text() + '\n[policy]\nlocal = "ask"\n')
    daemons(cli)
    script_tool_round(llm_emulator, "ran it")
    approved = cli("run", "-e", "run it", stdin="y\n")
    assert approved.returncode == 0, approved.stderr
    assert "🔐 Approval needed" in approved.stderr
    assert "✓ system.run: exit code: 0" in approved.stderr
    script_tool_round(llm_emulator, "did not run it")
    denied = cli("run", "-e", "run it again", stdin="n\n")
    assert denied.returncode == 0, denied.stderr
    assert "✗ system.run: the user denied system.run" in denied.stderr
    tool_message = llm_emulator.requests[-1].json["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "denied" in tool_message["content"]


def test_sessions_and_status_are_answered_by_the_daemon(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    daemon = daemons(cli)
    llm_emulator.reply_text("stored")
    assert cli("run", "-s", "kept", "-e", "remember this").returncode == 0
    listing, modules = attached(cli, "sessions", "--json")
    assert listing.returncode == 0, listing.stderr
    assert not modules & set(HEAVY)
    assert listing.stdout == cli("--no-daemon", "sessions", "--json").stdout
    [row] = json.loads(listing.stdout)
    assert (row["id"], row["messages"]) == ("kept", 2)
    status, modules = attached(cli, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert not modules & set(HEAVY)
    info = json.loads(status.stdout)
    assert (info["pid"], info["channels"]) == (daemon.process.pid, ["cli"])
    from_pid_file = json.loads(cli("--no-daemon", "status", "--json").stdout)
    assert {**info, "uptime": 0} == {**from_pid_file, "uptime": 0}
    assert "openpista is running: PID" in cli("status").stdout


def test_send_delivers_to_a_served_chat_and_refuses_the_others(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    assert cli("send", "cli:local", "nobody listens").returncode == 1
    not_running = cli("send", "cli:local", "nobody listens")
    assert not_running.stderr.startswith("❌ openpista is not running")
    daemon = daemons(cli)
    sent = cli("send", "cli:local", "the backup has finished")
    assert sent.returncode == 0, sent.stderr
    daemon.wait_for("the backup has finished")
    unserved = cli("send", "telegram:123", "hello?")
    assert unserved.returncode == 1
    assert unserved.stderr.startswith("❌ send: no channel served by this daemon owns")
    assert "serving: cli" in unserved.stderr
    assert cli("send", "local:abc", "to a client?").returncode == 1
    assert cli("--no-daemon", "send", "cli:local", "x").returncode == 1
    assert not llm_emulator.requests  # delivered as is: the agent was not asked


def test_ctrl_c_cancels_the_turn_in_the_daemon(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    daemons(cli)
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 987"})])
    client = spawn(cli, "run", "-s", "long", "-e", "wait a long time")
    wait_line(client.stderr, "⚙ system.run")
    until(lambda: processes("sleep 987"))
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=DEADLINE) == 130
    assert client.stderr is not None
    assert "❌ cancelled: the turn was stopped in the daemon" in client.stderr.read()
    until(lambda: not processes("sleep 987"))  # the daemon killed the tool's process
    llm_emulator.reply_text("free again")
    again = cli("run", "-s", "long", "-e", "still there?")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "free again\n"


def test_a_daemon_killed_mid_turn_is_one_error_line_and_its_socket_is_replaced(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    daemon = daemons(cli)
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 987"})])
    client = spawn(cli, "run", "-e", "wait a long time")
    wait_line(client.stderr, "⚙ system.run")
    daemon.kill()  # SIGKILL: no goodbye on the socket
    assert client.wait(timeout=DEADLINE) == 1
    assert client.stderr is not None
    rest = client.stderr.read()
    assert rest.count("❌") == 1, rest
    assert "the daemon stopped during the turn" in rest
    assert "Traceback" not in rest
    assert control_socket(cli).exists()  # stale now: nobody listens
    llm_emulator.reply_text("answered here")
    cold = cli("run", "-e", "anyone?")
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout == "answered here\n"
    assert cli("status").returncode == 3
    second = daemons(cli)  # replaces the stale socket
    info = json.loads(cli("status", "--json").stdout)
    assert info["pid"] == second.process.pid


def test_a_stale_socket_file_is_ignored_by_clients_and_replaced_by_the_daemon(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    path = control_socket(cli)
    path.parent.mkdir(mode=0o700, parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nothing listens
    llm_emulator.reply_text("in process")
    done = cli("run", "-e", "hi")
    assert (done.returncode, done.stdout) == (0, "in process\n")
    assert cli("status").returncode == 3
    daemon = daemons(cli)
    assert json.loads(cli("status", "--json").stdout)["pid"] == daemon.process.pid


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o703])
def test_the_daemon_refuses_a_directory_other_users_may_write(cli: Cli, mode: int) -> None:
    directory = cli.home / ".openpista"
    directory.mkdir()
    directory.chmod(mode)
    done = cli("start", stdin="")
    assert done.returncode == 1
    [line] = [line for line in done.stderr.splitlines() if "❌" in line]
    assert line.startswith("❌ ")
    assert "is writable by other users" in line
    assert f"chmod 700 {directory}" in line
    assert "Traceback" not in done.stderr
    assert not (directory / "control.sock").exists()
    assert not (directory / "openpista.pid").exists()


def test_malformed_and_oversized_frames_get_error_frames_and_the_daemon_serves_on(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    daemons(cli)
    bad = [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"type": 7}',
        b'{"type": "launch"}',
        b"[" * 40 + b"]" * 40,
        json.dumps({"type": "run", "text": 5}).encode(),
        json.dumps({"type": "run", "text": "hi", "session": ["x"]}).encode(),
        json.dumps({"type": "sessions", "limit": "all"}).encode(),
        json.dumps({"type": "approval", "id": "1 2; /deny", "approve": True}).encode(),
        json.dumps({"type": "send", "channel": "", "text": "x"}).encode(),
        b"",
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DEADLINE)
        sock.connect(str(control_socket(cli)))
        for payload in bad:
            sock.sendall(frame(payload))
            answer = read_frame(sock)
            assert answer is not None, payload
            assert answer["type"] == "error", (payload, answer)
            assert answer["message"].startswith("❌ ")
        sock.sendall(frame(b'{"type": "status"}'))  # the same connection still works
        answer = read_frame(sock)
        assert answer is not None
        assert answer["data"]["running"] is True
        sock.sendall(struct.pack(">I", 1 << 31) + b"{}")
        answer = read_frame(sock)
        assert answer is not None
        assert "frame too large" in answer["message"]
        assert read_frame(sock) is None  # closed: the stream cannot be resynchronised
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(control_socket(cli)))
        sock.sendall(struct.pack(">I", 100) + b"{")  # half a frame, then gone
    assert cli("status").returncode == 0
    llm_emulator.reply_text("still fine")
    assert cli("run", "-e", "ok?").stdout == "still fine\n"


@pytest.fixture
def shared_home(cli: Cli) -> Iterator[Path]:
    """A state directory other users may enter (not write): only the socket protects it."""
    home = Path(tempfile.mkdtemp(prefix="openpista-", dir="/tmp"))
    home.chmod(0o755)
    cli.env["OPENPISTA_HOME"] = str(home)
    yield home
    shutil.rmtree(home, ignore_errors=True)


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOBODY_CLIENT = """
import json, socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except PermissionError:
    print("permission denied"); sys.exit(0)
try:
    sock.sendall(struct.pack(">I", 18) + b'{"type": "status"}')
except BrokenPipeError:
    pass  # refused at once: what the daemon said before hanging up is still readable
header = sock.recv(4, socket.MSG_WAITALL)
body = sock.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL) if len(header) == 4 else b""
print(json.loads(body)["message"] if body else "closed")
"""


def test_another_user_cannot_use_the_control_socket(
    cli: Cli, shared_home: Path, daemons: Callable[[Cli], Daemon]
) -> None:
    daemons(cli)
    path = shared_home / "control.sock"

    def as_nobody() -> str:
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                NOBODY_CLIENT,
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert done.returncode == 0, done.stderr  # the client itself failed: say how
        return done.stdout.strip()

    assert as_nobody() == "permission denied"  # the file's mode, 0600
    path.chmod(0o666)  # even if the mode were loosened, the peer's uid is checked
    assert as_nobody() == "❌ this daemon serves only its own user"
    assert cli("status").returncode == 0


def test_a_daemon_stopping_mid_turn_tells_the_attached_client_and_exits_cleanly(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    cli.write_config(cli.config.read_text() + "\n[gateway]\nshutdown_deadline = 0.5\n")
    daemon = daemons(cli)
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 987"})])
    client = spawn(cli, "run", "-e", "wait a long time")
    wait_line(client.stderr, "⚙ system.run")
    assert daemon.stop() == 0, daemon.output()
    assert client.wait(timeout=DEADLINE) == 1
    assert client.stderr is not None
    rest = client.stderr.read()
    assert "❌ openpista is restarting or stopping: this answer was cancelled" in rest, rest
    assert not control_socket(cli).exists()
    assert "Traceback" not in daemon.output()


def test_ctrl_c_at_the_approval_question_cancels_the_turn(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[[Cli], Daemon]
) -> None:
    cli.write_config(cli.config.read_text() + '\n[policy]\nlocal = "ask"\n')
    daemons(cli)
    script_tool_round(llm_emulator, "never said")
    client = subprocess.Popen(
        [str(OPENPISTA), "run", "-e", "run it"],
        stdin=subprocess.PIPE,  # open, never answered
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )
    wait_line(client.stderr, "🔐 Approval needed")
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=DEADLINE) == 130
    assert client.stderr is not None
    assert "❌ cancelled: the turn was stopped in the daemon" in client.stderr.read()
    assert len(llm_emulator.requests) == 1  # the tool never ran, the LLM was not asked again
