"""End to end: ``openpista doctor`` (the installed command) on a healthy and on a broken setup."""

from __future__ import annotations

import json
import socket
import socketserver
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista.memory.tables import VERSION_TABLE
from openpista_telegram.testing import DEFAULT_TOKEN as TELEGRAM_TOKEN
from openpista_telegram.testing import TelegramEmulator
from openpista_testing.cli import Cli
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port, silent_port

pytestmark = pytest.mark.e2e


class _PingHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(4096)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")


@pytest.fixture
def docker_engine() -> Iterator[str]:
    """A loopback server answering ``GET /_ping`` like the Docker engine: its DOCKER_HOST."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _PingHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def private(cli: Cli) -> Cli:
    """``cli`` with its state directory and config as ``openpista init`` leaves them."""
    state = cli.home / ".openpista"
    state.mkdir(mode=0o700, exist_ok=True)
    state.chmod(0o700)
    cli.config.chmod(0o600)
    return cli


def doctor_json(cli: Cli) -> tuple[int, dict[str, dict[str, Any]]]:
    done = cli("doctor", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, {check["name"]: check for check in json.loads(done.stdout)}


def test_a_healthy_setup_passes_with_a_real_round_trip(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("pong")
    assert cli("run", "-e", "hi").returncode == 0  # creates and migrates the database
    llm_emulator.reply_text("pong")

    done = private(cli)("doctor")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("✓ config: valid")
    assert "✓ provider openai/gpt-4o-mini: answered 'pong'" in lines
    assert llm_emulator.requests[-1].json["messages"][-1]["content"].endswith("pong")
    assert any(line.startswith("✓ database: ") and "revision 0" in line for line in lines)
    assert f"✓ home: {cli.home / '.openpista'} is private (mode 700)" in lines
    assert "✓ config file: " in done.stdout
    assert not any(line.startswith("✗") for line in lines)
    assert lines[-1] == "Everything looks fine."


def test_every_broken_piece_gets_a_cross_and_its_fix(
    cli: Cli, llm_emulator: LlmEmulator, docker_engine: str
) -> None:
    llm_emulator.reply_error(401, "Incorrect API key provided")
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    database = cli.home / "memory.db"
    with sqlite3.connect(database) as conn:  # written by a newer openpista
        conn.execute(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL)")
        conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES ('9999')")
    cli.write_config(
        cli.config.read_text()
        + f"""
[channels.web]
enabled = true
port = {port}

[channels.pigeon]
enabled = true
"""
    )
    state = cli.home / ".openpista"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    credentials = state / "credentials.toml"
    credentials.write_text('[openai]\nkind = "api_key"\napi_key = "sk-x"\n')
    credentials.chmod(0o644)
    cli.env.update(OPENPISTA_LOAD_PLUGINS="web,docker", DOCKER_HOST=docker_engine)

    with busy:
        code, checks = doctor_json(cli)

    assert code == 1
    # The credentials file others can read is refused before any request is sent.
    assert checks["provider openai"]["ok"] is False
    assert "chmod 600" in checks["provider openai"]["detail"]
    web = checks["channel web"]
    assert web["ok"] is False
    assert web["detail"] == f"port 127.0.0.1:{port} is in use"
    assert "[channels.web] port" in web["fix"]
    assert checks["channel pigeon"] == {
        "name": "channel pigeon",
        "ok": False,
        "detail": "no loaded plugin provides it",
        "fix": "install the plugin that provides it, or set [channels.pigeon] enabled = false",
    }
    assert checks["docker"]["ok"] is True, checks["docker"]
    assert checks["database"]["ok"] is False, checks["database"]
    assert "revision 9999, newer than this openpista" in checks["database"]["detail"]
    assert checks["home"]["ok"] is False
    assert checks["home"]["fix"] == f"chmod 700 {state}"
    assert checks["credentials"]["ok"] is False
    assert "mode 644" in checks["credentials"]["detail"]
    assert checks["config file"]["ok"] is False  # api_key = "test-key", mode 644


def test_a_rejected_key_is_reported_with_the_fix(cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(401, "Incorrect API key provided")

    code, checks = doctor_json(private(cli))

    assert code == 1
    provider = checks["provider openai/gpt-4o-mini"]
    assert provider["ok"] is False
    assert "HTTP 401" in provider["detail"]
    assert [name for name, check in checks.items() if check["ok"] is False] == [
        "provider openai/gpt-4o-mini"
    ]


def test_a_free_port_and_a_missing_docker_engine(cli: Cli, tmp_path: Path) -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    cli.write_config(cli.config.read_text() + f"\n[channels.web]\nenabled = true\nport = {port}\n")
    # Nothing listens on the socket: the engine is down.
    cli.env.update(OPENPISTA_LOAD_PLUGINS="web,docker", DOCKER_HOST=f"unix://{tmp_path}/no.sock")

    code, checks = doctor_json(private(cli))

    assert code == 1
    assert checks["channel web"] == {
        "name": "channel web",
        "ok": True,
        "detail": f"settings valid, 127.0.0.1:{port} free",
        "fix": "",
    }
    assert checks["docker"]["ok"] is False
    assert checks["docker"]["detail"].startswith(f"no Docker engine at unix://{tmp_path}/no.sock")
    assert "DOCKER_HOST" in checks["docker"]["fix"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("[agent\n", "config.toml"),
        ("[agent]\nmax_tool_rounds = 'many'\n", "max_tool_rounds"),
    ],
)
def test_a_broken_config_is_one_cross_with_the_fix(cli: Cli, config: str, expected: str) -> None:
    cli.write_config(config)

    done = cli("doctor")

    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    crosses = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    assert len(crosses) == 1, done.stdout
    assert crosses[0].startswith("✗ config: ")
    assert expected in done.stdout
    assert "    fix: " in done.stdout


def test_an_invalid_channel_table_names_the_option(cli: Cli) -> None:
    cli.write_config(cli.config.read_text() + "\n[channels.web]\nenabled = true\nport = 99999\n")
    cli.env.update(OPENPISTA_LOAD_PLUGINS="web")

    code, checks = doctor_json(private(cli))

    assert code == 1
    assert checks["channel web"]["ok"] is False
    assert "[channels.web] port" in checks["channel web"]["detail"]
    assert checks["channel web"]["fix"] == "correct [channels.web]"


def test_the_state_directory_openpista_creates_is_private(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    # The default database, ~/.openpista/memory.db, creates the state directory.
    lines = cli.config.read_text().splitlines()
    cli.write_config("\n".join(line for line in lines if "memory.db" not in line) + "\n")
    cli.config.chmod(0o600)
    assert cli("run", "-e", "hi").returncode == 0

    code, checks = doctor_json(cli)

    assert code == 0, checks
    state = cli.home / ".openpista"
    assert checks["home"] == {
        "name": "home",
        "ok": True,
        "detail": f"{state} is private (mode 700)",
        "fix": "",
    }
    assert checks["database"]["ok"] is True
    assert "schema at revision" in checks["database"]["detail"]


@pytest.mark.parametrize(("mode", "ok"), [("webhook", False), ("polling", True)])
def test_a_webhook_port_counts_only_in_webhook_mode(cli: Cli, mode: str, ok: bool) -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    cli.write_config(
        cli.config.read_text()
        + f"""
[channels.telegram]
enabled = true
token = "123:abc"
allowed_users = [42]
mode = "{mode}"
webhook_url = "https://bot.example.org/telegram/webhook"
webhook_port = {port}
api_base = "http://127.0.0.1:{free_port()}"
"""
    )
    cli.env.update(OPENPISTA_LOAD_PLUGINS="telegram")

    with busy:
        _, checks = doctor_json(private(cli))

    telegram = checks["channel telegram"]
    assert telegram["ok"] is ok, telegram
    if not ok:
        assert telegram["detail"] == f"port 127.0.0.1:{port} is in use"
        assert "[channels.telegram] webhook_port" in telegram["fix"]


def telegram_config(cli: Cli, api_base: str, token: str = TELEGRAM_TOKEN) -> None:
    cli.write_config(
        cli.config.read_text()
        + f"""
[channels.telegram]
enabled = true
token = "{token}"
allowed_users = [42]
api_base = "{api_base}"
"""
    )
    cli.env.update(OPENPISTA_LOAD_PLUGINS="telegram")


def test_a_channel_token_is_checked_online_through_the_plugin_hook(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("pong")
    with TelegramEmulator() as telegram:
        telegram_config(cli, telegram.base_url)

        code, checks = doctor_json(private(cli))

    assert checks["channel telegram token"] == {
        "name": "channel telegram token",
        "ok": True,
        "detail": "valid: bot @openpista_test_bot (id 123456789)",
        "fix": "",
    }
    assert telegram.requests == ["getMe"]
    assert code == 0, checks


def test_a_refused_token_is_a_cross_that_does_not_show_it(cli: Cli) -> None:
    revoked = "987654321:AAE-revoked-token-of-this-bot"
    with TelegramEmulator() as telegram:
        telegram_config(cli, telegram.base_url, revoked)

        done = private(cli)("doctor")

    assert done.returncode == 1
    assert (
        "✗ channel telegram token: Telegram refused the token: HTTP 401 Unauthorized\n"
        "    fix: copy the token again from @BotFather (/token) into [channels.telegram] token "
        "or $TELEGRAM_BOT_TOKEN\n"
    ) in done.stdout
    assert "revoked" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_hung_token_check_is_cut_by_the_timeout_option(cli: Cli) -> None:
    with silent_port() as port:
        telegram_config(cli, f"http://127.0.0.1:{port}")

        done = private(cli)("doctor", "--timeout", "1")

    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert (
        "✗ channel telegram token: no answer within 1 s\n"
        "    fix: check the network, or [channels.telegram] api_base (the Bot API server)\n"
    ) in done.stdout
    assert TELEGRAM_TOKEN not in done.stdout + done.stderr


def executable(folder: Path, name: str) -> Path:
    """A program that does nothing, named ``name``, in ``folder``."""
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_the_programs_of_loaded_tool_plugins_are_looked_for(cli: Cli, tmp_path: Path) -> None:
    programs = tmp_path / "bin"
    programs.mkdir()
    tesseract = executable(programs, "tesseract")
    cli.env.update(OPENPISTA_LOAD_PLUGINS="browser,desktop", PATH=str(programs))
    cli.env.pop("DISPLAY", None)
    config = cli.config.read_text()

    _, checks = doctor_json(private(cli))

    assert checks["chromium"] == {
        "name": "chromium",
        "ok": False,
        "detail": "not found on PATH (looked for chromium, chromium-browser, google-chrome, "
        "google-chrome-stable)",
        "fix": "install chromium, or set [tools.browser] executable",
    }
    assert checks["display"] == {  # the desktop plugin's own check (doctor_checks)
        "name": "display",
        "ok": False,
        "detail": "no X display ($DISPLAY is unset and [tools.desktop] display is not set)",
        "fix": "install xvfb, then start `Xvfb :99` and set DISPLAY=:99 (or [tools.desktop] "
        "display)",
    }
    assert checks["tesseract"] == {
        "name": "tesseract",
        "ok": True,
        "detail": str(tesseract),
        "fix": "install tesseract-ocr (screen OCR)",
    }

    xvfb = executable(programs, "Xvfb")
    tesseract.unlink()
    browser = executable(tmp_path, "my browser")
    display = f"127.0.0.1:{free_port() - 6000}"  # X display N is TCP port 6000 + N
    cli.write_config(
        config + f'\n[tools.browser]\nexecutable = "{browser}"\n\n[tools.desktop]\n'
        f'display = "{display}"\n'
    )

    _, checks = doctor_json(cli)

    assert checks["chromium"]["ok"] is True
    assert checks["chromium"]["detail"] == str(browser)
    assert checks["display"]["ok"] is False
    assert checks["display"]["detail"] == f"no X server answers at {display}"
    assert checks["display"]["fix"].endswith(f"; Xvfb is {xvfb}")
    assert checks["tesseract"]["ok"] is False
    assert checks["tesseract"]["detail"] == "not found on PATH (looked for tesseract)"


def test_no_program_is_looked_for_when_its_plugin_is_off(cli: Cli, tmp_path: Path) -> None:
    cli.env.update(OPENPISTA_LOAD_PLUGINS="browser,desktop", PATH=str(tmp_path))
    cli.write_config(
        cli.config.read_text()
        + "\n[tools.browser]\nenabled = false\n\n[tools.desktop]\nenabled = false\n"
    )

    _, checks = doctor_json(private(cli))

    assert {"browser", "desktop"} <= set(checks["plugins"]["detail"].split(": ")[1].split(", "))
    assert not {"chromium", "display", "tesseract"} & set(checks)


def test_a_quic_channel_port_is_checked_as_udp(cli: Cli) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    mobile = (
        f"\n[channels.mobile]\nenabled = true\nport = {port}\n"
        'tokens = { phone = "a-device-token-of-enough-length-0123" }\n'
    )
    cli.write_config(cli.config.read_text() + mobile)
    cli.env.update(OPENPISTA_LOAD_PLUGINS="mobile")

    with udp:
        _, busy = doctor_json(private(cli))
    with socket.create_server(("127.0.0.1", port)):  # TCP on that port: not what QUIC needs
        _, free = doctor_json(cli)

    assert busy["channel mobile"]["ok"] is False
    assert busy["channel mobile"]["detail"] == f"port 127.0.0.1:{port}/udp is in use"
    assert "[channels.mobile] port" in busy["channel mobile"]["fix"]
    assert free["channel mobile"] == {
        "name": "channel mobile",
        "ok": True,
        "detail": f"settings valid, 127.0.0.1:{port}/udp free",
        "fix": "",
    }
