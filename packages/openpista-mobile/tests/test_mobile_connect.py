"""``openpista connect`` as a real subprocess: reconnecting and resending after a daemon is
killed outright, piped standard input with approvals and /quit, and the ❌ lines for a
missing server and an untrusted certificate."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from openpista_mobile.adapter import MobileAdapter
from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import Daemon, Lines
from openpista_testing.emulator import LlmEmulator, TextReply
from openpista_testing.polling import eventually

from .conftest import free_udp_port, mobile_daemon_cli

TOKEN = "connect-token-0123456789abcdef"
PHONE_TOKEN = "phone-token-0123456789abcdef"  # conftest's token of the in-process server
NOT_RUNNING = "is `openpista start` running with [channels.mobile] enabled?"
DEADLINE = 90.0


def start_daemon(daemons: Callable[..., Daemon], cli: Cli) -> tuple[Daemon, str]:
    """``openpista start --no-terminal`` serving the mobile channel (a daemon of the shared
    ``daemons`` fixture: killed at the test's end), and its certificate's fingerprint."""
    daemon = daemons(cli, "--no-terminal")
    return daemon, daemon.wait_for("certificate SHA-256", DEADLINE).split()[-1]


def daemon_cli(tmp_path: Path, llm_emulator: LlmEmulator, port: int) -> Cli:
    return mobile_daemon_cli(tmp_path, llm_emulator, port, TOKEN)


def assert_one_error_line(stderr: str) -> None:
    assert stderr.startswith("❌"), stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr


def connect_args(port: int, fingerprint: str) -> list[str]:
    url = f"quic://127.0.0.1:{port}"
    return ["connect", url, "--device", "laptop", "--token", TOKEN, "--fingerprint", fingerprint]


@pytest.mark.e2e
def test_a_message_unanswered_when_the_daemon_is_killed_is_sent_to_its_restart(
    tmp_path: Path, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    port = free_udp_port()
    cli = daemon_cli(tmp_path, llm_emulator, port)
    first, fingerprint = start_daemon(daemons, cli)
    llm_emulator.reply(TextReply("the killed daemon never sends this", delay=600))
    llm_emulator.reply_text("answered after the restart")
    client = subprocess.Popen(
        [str(OPENPISTA), *connect_args(port, fingerprint)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )
    try:
        out, err = Lines(client, client.stdout), Lines(client, client.stderr)
        err.wait_for("connected to", DEADLINE)
        assert client.stdin is not None
        client.stdin.write("are you there?\n")
        client.stdin.flush()
        asyncio.run(eventually(lambda: len(llm_emulator.requests) == 1, wait=DEADLINE))
        first.stop(signal.SIGKILL)  # no goodbye: the client must notice by itself
        start_daemon(daemons, cli)  # the same port and certificate
        lost = err.wait_for("lost the connection", DEADLINE).rstrip("\n")
        assert lost.endswith("reconnecting…")
        # Noticed by itself, not by waiting out QUIC's idle timeout: the port refused
        # (before the restart) or the restarted daemon answered a new connection.
        assert "nothing listens on udp" in lost or "it answers new connections" in lost, lost
        answer = out.wait_for("answered after the restart", DEADLINE)
        assert answer.rstrip("\n").endswith("answered after the restart")
        err.wait_for("reconnected", DEADLINE)
        client.stdin.write("/quit\n")
        client.stdin.flush()
        assert client.wait(timeout=DEADLINE) == 0
    finally:
        client.kill()
        client.wait()
    # Sent once to each daemon: the restarted one ran it once, nothing ran it again.
    assert len(llm_emulator.requests) == 2
    last = llm_emulator.requests[1].json["messages"][-1]
    assert last == {"role": "user", "content": "are you there?"}
    assert "Traceback" not in err.output()


@pytest.mark.e2e
def test_piped_input_answers_approvals_denies_at_its_end_and_quits(
    tmp_path: Path, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    port = free_udp_port()
    cli = daemon_cli(tmp_path, llm_emulator, port)
    _, fingerprint = start_daemon(daemons, cli)
    args = connect_args(port, fingerprint)
    touched, untouched = tmp_path / "approved", tmp_path / "denied"

    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {touched}"})])
    llm_emulator.reply_text("touched it")
    approved = cli(*args, stdin="touch a file\ny\n/quit\nnever sent\n")
    assert approved.returncode == 0, approved.stderr
    assert "Approval needed" in approved.stderr
    assert approved.stdout.strip() == "touched it"
    assert touched.exists()

    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {untouched}"})])
    llm_emulator.reply_text("it was denied")
    at_end = cli(*args, stdin="touch another file\n")
    assert at_end.returncode == 0, at_end.stderr
    assert "standard input ended: denying" in at_end.stderr
    assert at_end.stdout.strip() == "it was denied"  # the answer is in before it exits

    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {untouched}"})])
    llm_emulator.reply_text("denied again")
    quitting = cli(*args, stdin="touch it once more\n/quit\nnever sent\n")
    assert quitting.returncode == 0, quitting.stderr
    assert "then leaving" in quitting.stderr
    assert quitting.stdout.strip() == "denied again"
    assert not untouched.exists()
    assert len(llm_emulator.requests) == 6  # "never sent" was not


@pytest.mark.parametrize("one_shot", [True, False])
def test_no_server_is_one_line_naming_the_address(tmp_path: Path, one_shot: bool) -> None:
    cli = Cli.isolated(tmp_path)
    cli.env.update(OPENPISTA_LOAD_PLUGINS="mobile", OPENPISTA_HOME=str(tmp_path / "state"))
    port = free_udp_port()
    args = ["connect", f"quic://127.0.0.1:{port}", "--token", TOKEN, "--insecure"]
    done = cli(*args, "-e", "hello") if one_shot else cli(*args, stdin="hello\n")
    assert done.returncode == 1
    assert_one_error_line(done.stderr)
    assert f"127.0.0.1:{port}" in done.stderr
    assert NOT_RUNNING in done.stderr


async def test_an_untrusted_certificate_says_how_to_pin_it(
    mobile: MobileAdapter, tmp_path: Path
) -> None:
    cli = Cli.isolated(tmp_path)
    cli.env.update(OPENPISTA_LOAD_PLUGINS="mobile", OPENPISTA_HOME=str(tmp_path / "state"))
    url = f"quic://127.0.0.1:{mobile.port}"
    base = ["connect", url, "--device", "phone", "--token", PHONE_TOKEN, "-e", "hi"]

    async def run(*extra: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            str(OPENPISTA), *base, *extra, env=cli.env, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await process.communicate()
        assert process.returncode is not None
        return process.returncode, stderr.decode()

    code, unpinned = await run()  # no --fingerprint: the system's CAs do not know it
    assert code == 1
    assert_one_error_line(unpinned)
    assert "not trusted" in unpinned
    assert "`openpista mobile fingerprint`" in unpinned
    assert "--fingerprint" in unpinned
    assert mobile.fingerprint in unpinned

    code, mismatch = await run("--fingerprint", "AB" * 32)
    assert code == 1
    assert_one_error_line(mismatch)
    assert f"--fingerprint {mobile.fingerprint}" in mismatch
    assert PHONE_TOKEN not in unpinned + mismatch
