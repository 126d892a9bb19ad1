"""``openpista slack ...`` and a real ``openpista start --no-terminal`` serving Slack against
the emulator: pairing by the printed code over Socket Mode, a restart keeps the session, and the
HTTP Events API mode."""

from __future__ import annotations

import json
import socket
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openpista.access import PAIRED
from openpista_slack.testing import SlackEmulator, User
from openpista_testing.cli import Cli
from openpista_testing.daemon import DEADLINE, ServingDaemons, stop_daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port


@pytest.fixture
def cli(tmp_path: Path, llm_emulator: LlmEmulator, slack: SlackEmulator) -> Cli:
    cli = Cli.isolated(tmp_path / "cli-home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "slack"
    cli.env["SLACK_BOT_TOKEN"] = slack.bot_token  # tokens from the environment
    cli.env["SLACK_APP_TOKEN"] = slack.app_token
    with cli.config.open("a") as config:
        config.write(
            f"""
[channels.slack]
enabled = true
api_base = "{slack.api_url}"
retry_base_delay = 0.01
stream_interval = 0.1
"""
        )
    return cli


@pytest.fixture
def daemons(cli: Cli) -> Iterator[ServingDaemons]:
    started = ServingDaemons(cli, ["slack"])
    yield started
    started.close()


def wait_for(check: Callable[[], bool], what: Callable[[], object]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def texts(slack: SlackEmulator, channel: str) -> list[str]:
    return [m.text for m in slack.messages if m.channel == channel]


def test_help_lists_the_commands(cli: Cli) -> None:
    shown = cli("slack", "--help")
    assert shown.returncode == 0
    for command in ("pair", "paired", "unpair"):
        assert command in shown.stdout


def test_init_then_pair_by_the_printed_code(
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    slack: SlackEmulator,
    daemons: ServingDaemons,
    mallory: User,
) -> None:
    cli = Cli.isolated(tmp_path / "init-home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "slack"
    cli.config.unlink(missing_ok=True)
    done = cli(
        "init",
        *("--provider", "openai", "--model", "gpt-4o-mini", "--api-key", "test-key"),
        *("--base-url", llm_emulator.openai_base_url, "--channel", "slack"),
        stdin=f"{slack.bot_token}\n{slack.app_token}\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "openpista slack pair" in done.stdout
    table = tomllib.loads(cli.config.read_text())["channels"]["slack"]
    assert (table["bot_token"], table["app_token"]) == (slack.bot_token, slack.app_token)
    assert table["enabled"] is True
    with cli.config.open("a") as config:  # [channels.slack] is the file's last table
        config.write(f'api_base = "{slack.api_url}"\nstream_interval = 0.1\n')
    llm_emulator.reply_text("welcome")
    paired = cli("slack", "pair")
    assert paired.returncode == 0, paired.stderr
    code = paired.stdout.split("/pair ", 1)[1].split()[0]

    process = daemons.start(cli)
    slack.dm(mallory, "let me in")
    wait_for(lambda: len(texts(slack, mallory.dm)) == 1, lambda: (slack.calls, slack.messages))
    slack.dm(mallory, f"/pair {code}")
    slack.dm(mallory, "hello")
    wait_for(lambda: texts(slack, mallory.dm)[2:] == ["welcome"], lambda: slack.messages)
    shown = texts(slack, mallory.dm)
    assert shown[0].startswith("⛔")
    assert shown[1] == PAIRED
    stderr = stop_daemon(process)
    for secret in (slack.bot_token, slack.app_token):
        assert secret not in stderr

    listed = cli("slack", "paired")
    assert listed.stdout.split() == [mallory.id]
    removed = cli("slack", "unpair", mallory.id)
    assert removed.returncode == 0
    again = cli("slack", "unpair", mallory.id)
    assert again.returncode == 1
    assert "not paired" in again.stderr


def test_a_restart_keeps_the_session(
    cli: Cli,
    daemons: ServingDaemons,
    slack: SlackEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
) -> None:
    with cli.config.open("a") as config:
        config.write(f'allowed_users = ["{alice.id}"]\n')
    llm_emulator.default_reply = lambda body: f"heard {len(body['messages'])} messages"
    process = daemons.start()
    slack.dm(alice, "remember the number 42")
    wait_for(lambda: texts(slack, alice.dm)[:1] == ["heard 2 messages"], lambda: slack.messages)
    stop_daemon(process)
    process = daemons.start()
    slack.dm(alice, "what was the number?")
    wait_for(lambda: len(texts(slack, alice.dm)) == 2, lambda: slack.messages)
    wait_for(lambda: texts(slack, alice.dm)[1].startswith("heard"), lambda: slack.messages)
    stop_daemon(process)
    history = json.dumps(llm_emulator.requests[-1].json)
    assert "remember the number 42" in history, "the restarted daemon lost the conversation"


def test_http_mode_daemon(
    cli: Cli,
    daemons: ServingDaemons,
    slack: SlackEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
) -> None:
    port = free_port()
    text = cli.config.read_text()
    cli.write_config(
        text
        + f'mode = "http"\nhttp_port = {port}\nallowed_users = ["{alice.id}"]\n'
        + f'signing_secret = "{slack.signing_secret}"\n'
    )
    llm_emulator.reply_text("served over HTTP")
    process = daemons.start()
    wait_for(lambda: listening(port), lambda: f"nothing listens on {port}")
    slack.events_url = f"http://127.0.0.1:{port}/slack/events"
    slack.dm(alice, "hello")
    wait_for(
        lambda: texts(slack, alice.dm) == ["served over HTTP"],
        lambda: (slack.messages, slack.deliveries, slack.calls),
    )
    assert slack.deliveries[-1] == (200, "")
    stderr = stop_daemon(process)
    assert slack.signing_secret not in stderr


def test_missing_token_is_a_clear_start_error(cli: Cli) -> None:
    del cli.env["SLACK_BOT_TOKEN"]
    done = cli("start", "--no-terminal", timeout=DEADLINE)
    assert done.returncode != 0
    assert "[channels.slack] bot_token: missing" in done.stderr
    assert "Traceback" not in done.stderr
