"""``openpista discord ...`` and a real ``openpista start --no-terminal`` serving Discord
against the emulator: pairing by the printed code, and a restart keeps the session."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from openpista.access import PAIRED, REFUSAL
from openpista_discord.settings import parse_settings
from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import DEADLINE, ServingDaemons, stop_daemon
from openpista_testing.emulator import LlmEmulator


@pytest.fixture
def cli(tmp_path: Path, llm_emulator: LlmEmulator, discord_emulator: DiscordEmulator) -> Cli:
    cli = Cli.isolated(tmp_path / "cli-home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "discord"
    with cli.config.open("a") as config:
        config.write(
            f"""
[channels.discord]
enabled = true
token = "{discord_emulator.token}"
api_base = "{discord_emulator.base_url}"
"""
        )
    return cli


@pytest.fixture
def daemons(cli: Cli) -> Iterator[ServingDaemons]:
    started = ServingDaemons(cli, ["discord"])
    yield started
    started.close()


def start(daemons: ServingDaemons, discord_emulator: DiscordEmulator) -> subprocess.Popen[str]:
    """A daemon that has logged in to the emulator's gateway."""
    before = discord_emulator.identifies
    return daemons.start(ready=lambda: discord_emulator.identifies > before)


def wait_texts(discord_emulator: DiscordEmulator, channel: int, count: int) -> list[str]:
    deadline = time.monotonic() + DEADLINE
    while len(discord_emulator.texts(channel)) < count:
        assert time.monotonic() < deadline, discord_emulator.texts(channel)
        time.sleep(0.05)
    return discord_emulator.texts(channel)


def test_help_lists_the_commands(cli: Cli) -> None:
    shown = cli("discord", "--help")
    assert shown.returncode == 0
    for command in ("pair", "paired", "unpair"):
        assert command in shown.stdout


def test_pair_then_restart_keeps_the_session(
    cli: Cli,
    daemons: ServingDaemons,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
) -> None:
    llm_emulator.default_reply = lambda body: f"heard {len(body['messages'])} messages"
    mallory = User(6666, "mallory")
    paired = cli("discord", "pair")
    assert paired.returncode == 0, paired.stderr
    code = paired.stdout.split("/pair ", 1)[1].split()[0]

    process = start(daemons, discord_emulator)
    assert {c["name"] for c in discord_emulator.commands["global"]} >= {"ask", "pair"}
    dm = discord_emulator.dm_channel(mallory)
    discord_emulator.send_message(dm, "remember the number 42", mallory)
    wait_texts(discord_emulator, dm, 1)
    discord_emulator.send_message(dm, f"/pair {code}", mallory)
    wait_texts(discord_emulator, dm, 2)
    discord_emulator.send_message(dm, "remember the number 42", mallory)
    deadline = time.monotonic() + DEADLINE
    while not discord_emulator.texts(dm)[2:] or not discord_emulator.texts(dm)[2].startswith(
        "heard 2"
    ):
        assert time.monotonic() < deadline, discord_emulator.texts(dm)
        time.sleep(0.05)
    texts = discord_emulator.texts(dm)
    assert texts[:2] == [REFUSAL, PAIRED]
    stderr = stop_daemon(process)
    assert discord_emulator.token not in stderr

    assert cli("discord", "paired").stdout.split() == [str(mallory.id)]

    process = start(daemons, discord_emulator)
    discord_emulator.send_message(dm, "what was the number?", mallory)
    deadline = time.monotonic() + DEADLINE
    while discord_emulator.texts(dm)[-1:] != ["heard 4 messages"]:
        assert time.monotonic() < deadline, discord_emulator.texts(dm)
        time.sleep(0.05)
    stop_daemon(process)
    history = json.dumps(llm_emulator.requests[-1].json)
    assert "remember the number 42" in history, "the restarted daemon lost the conversation"

    assert cli("discord", "unpair", str(mallory.id)).returncode == 0
    again = cli("discord", "unpair", str(mallory.id))
    assert again.returncode == 1
    assert "not paired" in again.stderr


def test_invalid_token_is_one_line_at_start(
    cli: Cli,
    daemons: ServingDaemons,
    discord_emulator: DiscordEmulator,
    tmp_path: Path,
) -> None:
    wrong = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GWrong.not-the-right-token-at-all_0000"
    cli.write_config(cli.config.read_text().replace(discord_emulator.token, wrong))
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(OPENPISTA), "start", "--no-terminal"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            env=cli.env,
        )
    daemons.started.append(process)
    deadline = time.monotonic() + DEADLINE
    while "not served" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=DEADLINE)
    text = log.read_text()
    [line] = [line for line in text.splitlines() if "not served" in line]
    assert "❌ channel discord is not served: Discord refused the bot token" in line
    assert "Traceback" not in text
    assert wrong not in text


def test_init_writes_a_valid_table(
    cli: Cli,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
) -> None:
    cli.config.unlink()
    provider = ["--provider", "openai", "--model", "gpt-4o-mini", "--api-key", "test-key"]
    done = cli(
        "init",
        *provider,
        "--base-url",
        llm_emulator.openai_base_url,
        "--channel",
        "discord",
        stdin=discord_emulator.token + "\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "openpista discord pair" in done.stdout
    document = tomllib.loads(cli.config.read_text())
    table = document["channels"]["discord"]
    assert table == {"enabled": True, "token": discord_emulator.token}
    assert parse_settings(table).secret("token") == discord_emulator.token
