"""``openpista connect`` against a real ``openpista start --no-terminal``; config errors."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openpista.config import ConfigError
from openpista_mobile.adapter import create_mobile_adapter
from openpista_mobile.settings import MobileSettings
from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.emulator import LlmEmulator

from .conftest import free_udp_port, mobile_daemon_cli

TOKEN = "e2e-token-0123456789abcdef"


@pytest.fixture
def daemon(tmp_path: Path, llm_emulator: LlmEmulator) -> Iterator[tuple[Cli, int, str]]:
    """``openpista start --no-terminal`` with the mobile channel on a free UDP port."""
    with running_daemon(tmp_path, llm_emulator) as started:
        yield started


@contextlib.contextmanager
def running_daemon(
    tmp_path: Path, llm_emulator: LlmEmulator, extra_config: str = ""
) -> Iterator[tuple[Cli, int, str]]:
    """The daemon of :func:`daemon`, with ``extra_config`` appended to its config."""
    port = free_udp_port()
    cli = mobile_daemon_cli(tmp_path, llm_emulator, port, TOKEN, extra_config)
    process = subprocess.Popen(
        [str(OPENPISTA), "start", "--no-terminal"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        fingerprint = ""
        while time.monotonic() < deadline and not fingerprint:
            line = process.stderr.readline()
            assert line, f"the daemon exited: {process.wait()}"
            if "certificate SHA-256" in line:
                fingerprint = line.rsplit(" ", 1)[1].strip()
        yield cli, port, fingerprint
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.e2e
def test_connect_one_shot_against_a_running_daemon(
    daemon: tuple[Cli, int, str], llm_emulator: LlmEmulator
) -> None:
    cli, port, fingerprint = daemon
    llm_emulator.reply_text("pong over quic")
    url = f"quic://127.0.0.1:{port}"
    done = cli(
        "connect",
        url,
        "--device",
        "laptop",
        "--token",
        TOKEN,
        "--fingerprint",
        fingerprint,
        "-e",
        "ping",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pong over quic"
    assert TOKEN not in done.stderr

    refused = cli(
        "connect",
        url,
        "--device",
        "laptop",
        "--token",
        "wrong-token-0123456789",
        "--fingerprint",
        fingerprint,
        "-e",
        "ping",
    )
    assert refused.returncode == 1
    assert "refused the device id or token" in refused.stderr

    other = "AA:" * 31 + "AA"
    mismatch = cli(
        "connect", url, "--device", "laptop", "--token", TOKEN, "--fingerprint", other, "-e", "ping"
    )
    assert mismatch.returncode == 1
    assert "fingerprint" in mismatch.stderr
    assert len(llm_emulator.requests) == 1


@pytest.mark.e2e
def test_the_interactive_client_shows_pushed_cron_answers(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    def reply(body: dict[str, object]) -> str:
        asked = json.dumps(body["messages"])
        return "pong" if "ping" in asked.rsplit("daily report", 1)[-1] else "all disks fine"

    llm_emulator.default_reply = reply
    cron = '\n[[cron]]\nschedule = "*/2 * * * * *"\nchannel = "mobile:laptop"\n'
    cron += 'message = "daily report"\n'
    with running_daemon(tmp_path, llm_emulator, cron) as (cli, port, fingerprint):
        args = ["connect", f"quic://127.0.0.1:{port}", "--device", "laptop", "--token", TOKEN]
        client = subprocess.Popen(
            [str(OPENPISTA), *args, "--fingerprint", fingerprint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli.env,
        )
        try:
            lines = output_lines(client)
            pushed = wait_for_line(lines, "📬 push:")
            assert pushed.endswith("📬 push: all disks fine")
            assert client.stdin is not None
            client.stdin.write("ping\n")
            client.stdin.flush()
            assert wait_for_line(lines, "pong").endswith("pong")  # the prompt loop goes on
            client.stdin.write("/quit\n")
            client.stdin.flush()
            assert client.wait(timeout=60) == 0
        finally:
            client.kill()
            client.wait()
        one_shot = cli(*args, "--fingerprint", fingerprint, "-e", "ping")
        assert one_shot.returncode == 0, one_shot.stderr
        assert one_shot.stdout.strip() == "pong"  # -e mode prints no pushes


def output_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lines ``process`` writes to standard output, read by a thread."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str], needle: str) -> str:
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if needle in line:
            return line
        seen.append(line)
    raise AssertionError(f"no line with {needle!r} in {seen!r}")


def test_connect_explains_bad_arguments(tmp_path: Path) -> None:
    cli = Cli.isolated(tmp_path)
    cli.env.update(OPENPISTA_LOAD_PLUGINS="mobile")
    no_token = cli("connect", "quic://127.0.0.1:1", "-e", "x")
    assert no_token.returncode == 2
    assert "--token" in no_token.stderr
    bad_print = cli("connect", "quic://127.0.0.1:1", "--token", TOKEN, "--fingerprint", "zz")
    assert bad_print.returncode == 2
    assert "64 hex digits" in bad_print.stderr
    bad_url = cli("connect", "http://host", "--token", TOKEN, "--insecure", "-e", "x")
    assert bad_url.returncode == 1
    assert "not a quic://host:port address" in bad_url.stderr


def test_fingerprint_and_token_commands(tmp_path: Path) -> None:
    cli = Cli.isolated(tmp_path)
    cli.env.update(OPENPISTA_LOAD_PLUGINS="mobile", OPENPISTA_HOME=str(tmp_path / "state"))
    first, again = cli("mobile", "fingerprint"), cli("mobile", "fingerprint")
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout  # generated once, then kept
    assert len(first.stdout.strip()) == 95
    assert (tmp_path / "state" / "mobile" / "key.pem").stat().st_mode & 0o777 == 0o600
    made = cli("mobile", "token", "my-phone")
    assert made.returncode == 0
    line = made.stdout.splitlines()[-1]
    assert line.startswith('my-phone = "')
    assert len(line) > 30


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tokens": {"phone": "short"}}, "shorter than 16"),
        ({"tokens": {"bad device!": "x" * 20}}, "device id"),
        ({"tokens": [{"device": "a"}]}, "exactly the keys device and token"),
        ({"tokens": [{"device": "a", "token": "x" * 20}] * 2}, "listed twice"),
        ({"tokens": "nope"}, "tokens"),
        ({"port": 70000}, "port"),
        ({"colour": "blue"}, "colour: unknown option"),
    ],
)
def test_bad_tables_are_explained(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        MobileSettings.from_table(table)
    assert message in str(error.value)
    assert "x" * 20 not in str(error.value)


def test_tokens_as_a_list_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = MobileSettings.from_table({"tokens": [{"device": "phone", "token": "p" * 20}]})
    monkeypatch.setenv("OPENPISTA_MOBILE_TOKEN", "tablet=" + "t" * 20)
    assert settings.token_table() == {"phone": "p" * 20, "tablet": "t" * 20}
    monkeypatch.setenv("OPENPISTA_MOBILE_TOKEN", "z" * 20)
    assert settings.token_table()["default"] == "z" * 20
    monkeypatch.delenv("OPENPISTA_MOBILE_TOKEN")
    with pytest.raises(ConfigError, match="no device may connect"):
        create_mobile_adapter(MobileSettings.from_table({"enabled": True}), None)  # type: ignore[arg-type]
