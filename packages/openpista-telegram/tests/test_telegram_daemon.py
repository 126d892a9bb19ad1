"""``openpista telegram ...`` and a real ``openpista start --no-terminal`` serving Telegram
against the Bot API emulator: pairing by the printed code, and a restart keeps the session."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openpista.access import PAIRED
from openpista_telegram.testing import TelegramEmulator, User
from openpista_testing.cli import Cli
from openpista_testing.daemon import DEADLINE, ServingDaemons, stop_daemon
from openpista_testing.emulator import LlmEmulator


@pytest.fixture
def cli(tmp_path: Path, llm_emulator: LlmEmulator, telegram: TelegramEmulator) -> Cli:
    cli = Cli.isolated(tmp_path / "cli-home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "telegram"
    with cli.config.open("a") as config:
        config.write(
            f"""
[channels.telegram]
enabled = true
token = "{telegram.token}"
api_base = "{telegram.base_url}"
poll_timeout = 5
retry_base_delay = 0.01
"""
        )
    return cli


@pytest.fixture
def daemons(cli: Cli) -> Iterator[ServingDaemons]:
    started = ServingDaemons(cli, ["telegram"])
    yield started
    started.close()


def test_help_lists_the_commands(cli: Cli) -> None:
    shown = cli("telegram", "--help")
    assert shown.returncode == 0
    for command in ("pair", "paired", "unpair"):
        assert command in shown.stdout


def test_pair_then_restart_keeps_the_session(
    cli: Cli,
    daemons: ServingDaemons,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    mallory: User,
) -> None:
    llm_emulator.default_reply = lambda body: f"heard {len(body['messages'])} messages"
    paired = cli("telegram", "pair")
    assert paired.returncode == 0, paired.stderr
    code = paired.stdout.split("/pair ", 1)[1].split()[0]
    assert "t.me" not in paired.stdout  # the bot's name is not known before the first start

    process = daemons.start()
    telegram.send_text(mallory.id, "remember the number 42", user=mallory)
    telegram.send_text(mallory.id, f"/pair {code}", user=mallory)
    telegram.send_text(mallory.id, "remember the number 42", user=mallory)
    wait_texts(telegram, mallory.id, 3)
    texts = telegram.texts(mallory.id)
    assert texts[0].startswith("⛔")
    assert texts[1] == PAIRED
    assert texts[2].startswith("heard")
    stderr = stop_daemon(process)
    assert telegram.token not in stderr

    listed = cli("telegram", "paired")
    assert listed.stdout.split() == [str(mallory.id)]
    link = cli("telegram", "pair")
    assert f"https://t.me/{telegram.username}?start=" in link.stdout

    process = daemons.start()
    telegram.send_text(mallory.id, "what was the number?", user=mallory)
    wait_texts(telegram, mallory.id, 4)
    stop_daemon(process)
    history = json.dumps(llm_emulator.requests[-1].json)
    assert "remember the number 42" in history, "the restarted daemon lost the conversation"
    sessions = json.loads(cli("sessions", "--json").stdout)
    assert len(sessions) == 1
    assert sessions[0]["messages"] == 4

    removed = cli("telegram", "unpair", str(mallory.id))
    assert removed.returncode == 0
    again = cli("telegram", "unpair", str(mallory.id))
    assert again.returncode == 1
    assert "not paired" in again.stderr


def test_missing_token_is_a_clear_start_error(cli: Cli) -> None:
    text = cli.config.read_text()
    cli.write_config(text.replace('token = "', 'not_the_token = "'))
    done = cli("start", "--no-terminal", timeout=DEADLINE)
    assert done.returncode != 0
    assert "[channels.telegram]" in done.stderr
    assert "not_the_token: unknown option" in done.stderr


def wait_texts(telegram: TelegramEmulator, chat_id: int, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while len(telegram.texts(chat_id)) < count:
        assert time.monotonic() < deadline, telegram.texts(chat_id)
        time.sleep(0.05)
