"""``openpista init`` for every channel, then ``openpista start``: the written config serves.

Each test answers init's questions on stdin as a user would, changes only what a test must
(ports to 0, the Telegram API to its emulator), starts the daemon and talks to the channel.
"""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import tomli_w

from openpista_telegram.testing import TelegramEmulator
from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.e2e

DEADLINE = 60.0


def run_init(
    cli: Cli, emulator: LlmEmulator, channel: str, answers: list[str]
) -> subprocess.CompletedProcess[str]:
    """``openpista init --channel CHANNEL`` (only that plugin loaded), ``answers`` on stdin."""
    cli.config.unlink(missing_ok=True)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = channel
    provider = ["--provider", "openai", "--model", "gpt-4o-mini", "--api-key", "test-key"]
    return cli(
        "init",
        *provider,
        "--base-url",
        emulator.openai_base_url,
        "--channel",
        channel,
        stdin="".join(answer + "\n" for answer in answers),
    )


def init(cli: Cli, emulator: LlmEmulator, channel: str, answers: list[str]) -> dict[str, Any]:
    """:func:`run_init`, which must succeed; the written TOML."""
    done = run_init(cli, emulator, channel, answers)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ wrote" in done.stdout
    assert "Traceback" not in done.stderr
    document: dict[str, Any] = tomllib.loads(cli.config.read_text())
    assert document["channels"][channel]["enabled"] is True
    return document


def rewrite(cli: Cli, document: dict[str, Any]) -> None:
    cli.config.write_text(tomli_w.dumps(document))


def listeners(cli: Cli) -> dict[str, str]:
    """``openpista status --json`` once the daemon is ready: listener name -> URL."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        status = cli("status", "--json")
        if status.returncode == 0:
            info = json.loads(status.stdout)
            if info["ready"]:
                return {item["name"]: item["url"] for item in info["listeners"]}
        time.sleep(0.2)
    raise AssertionError("the daemon never became ready")


@pytest.fixture
def start(cli: Cli, daemons: Callable[..., Daemon]) -> Callable[[str], Daemon]:
    """Starts ``openpista start --no-terminal`` with only CHANNEL's plugin loaded."""

    def run(channel: str) -> Daemon:
        cli.env["OPENPISTA_LOAD_PLUGINS"] = channel
        return daemons(cli, "--no-terminal")

    return run


def stop(daemon: Daemon) -> None:
    """SIGTERM, the exit code checked; what it wrote holds no ❌ and no traceback."""
    assert daemon.stop() == 0, daemon.output()
    assert "❌" not in daemon.output(), daemon.output()
    assert "Traceback" not in daemon.output(), daemon.output()


def test_web(cli: Cli, llm_emulator: LlmEmulator, start: Callable[[str], Daemon]) -> None:
    document = init(cli, llm_emulator, "web", ["n"])  # keep it on loopback
    table = document["channels"]["web"]
    assert "host" not in table  # the default: 127.0.0.1
    token = table["token"]
    table["port"] = 0
    rewrite(cli, document)
    daemon = start("web")
    url = listeners(cli)["the web channel"]
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{url}/api/health", timeout=10).json()["ok"] is True
    link = cli("web", "link")
    assert token in link.stdout
    stop(daemon)


def test_mobile(cli: Cli, llm_emulator: LlmEmulator, start: Callable[[str], Daemon]) -> None:
    document = init(cli, llm_emulator, "mobile", ["tablet", ""])  # Enter: not exposed
    table = document["channels"]["mobile"]
    assert "host" not in table
    assert list(table["tokens"]) == ["tablet"]
    assert len(table["tokens"]["tablet"]) >= 32
    table["port"] = 0
    rewrite(cli, document)
    daemon = start("mobile")
    url = listeners(cli)["mobile QUIC"]
    assert url.startswith("quic://127.0.0.1:")
    assert not url.endswith(":0")
    stop(daemon)


def test_telegram(cli: Cli, llm_emulator: LlmEmulator, start: Callable[[str], Daemon]) -> None:
    with TelegramEmulator() as telegram:
        document = init(cli, llm_emulator, "telegram", [telegram.token])
        assert document["channels"]["telegram"]["token"] == telegram.token
        document["channels"]["telegram"]["api_base"] = telegram.base_url
        rewrite(cli, document)
        daemon = start("telegram")
        listeners(cli)
        end = time.monotonic() + DEADLINE
        while "getUpdates" not in telegram.requests and time.monotonic() < end:
            time.sleep(0.1)
        assert "getUpdates" in telegram.requests  # it polls with the token init wrote
        stop(daemon)


def test_whatsapp(cli: Cli, llm_emulator: LlmEmulator, start: Callable[[str], Daemon]) -> None:
    document = init(cli, llm_emulator, "whatsapp", ["109876543210", "EAAG-test", "s3cret", "n"])
    table = document["channels"]["whatsapp"]
    assert table["phone_number_id"] == "109876543210"
    assert "webhook_host" not in table
    table["webhook_port"] = 0
    rewrite(cli, document)
    daemon = start("whatsapp")
    (url,) = listeners(cli).values()
    assert url.startswith("http://127.0.0.1:")
    challenge = httpx.get(
        f"{url}/webhook",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": table["verify_token"],
            "hub.challenge": "1158201444",
        },
        timeout=10,
    )
    assert challenge.status_code == 200
    assert challenge.text == "1158201444"
    stop(daemon)


def test_yes_never_opens_a_port(cli: Cli, llm_emulator: LlmEmulator) -> None:
    cli.config.unlink(missing_ok=True)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web,mobile,whatsapp"
    done = cli("init", "--yes", "--channel", "web", "--channel", "mobile", "--channel", "whatsapp")
    assert done.returncode == 0, done.stderr
    channels = tomllib.loads(cli.config.read_text())["channels"]
    assert "host" not in channels["web"]
    assert "host" not in channels["mobile"]
    assert "webhook_host" not in channels["whatsapp"]
    assert set(channels["whatsapp"]) == {"enabled", "verify_token"}  # secrets: from the env


def test_saying_yes_opens_the_port_after_explaining_it(cli: Cli, llm_emulator: LlmEmulator) -> None:
    done = run_init(cli, llm_emulator, "web", ["y"])
    assert done.returncode == 0, done.stderr
    assert "only this machine can reach it" in done.stdout
    assert "plain HTTP" in done.stdout
    assert tomllib.loads(cli.config.read_text())["channels"]["web"]["host"] == "0.0.0.0"


def test_a_bad_device_name_is_one_clear_line(cli: Cli, llm_emulator: LlmEmulator) -> None:
    done = run_init(cli, llm_emulator, "mobile", ["../../etc"])
    assert done.returncode == 1
    assert "❌" in done.stderr
    assert "device id" in done.stderr
    assert "Traceback" not in done.stderr
    assert not cli.config.exists()


def test_unknown_channel_lists_the_loaded_ones(cli: Cli, llm_emulator: LlmEmulator) -> None:
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web"
    cli.config.unlink(missing_ok=True)
    done = cli("init", "--yes", "--channel", "pigeon")
    assert done.returncode != 0
    assert "unknown channel(s) pigeon; available: cli, web" in done.stderr
