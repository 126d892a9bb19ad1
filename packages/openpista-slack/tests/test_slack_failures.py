"""Slack failing: rate limits, server errors, refused tokens and scopes, lost sockets."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from openpista import ConfigError
from openpista_slack.adapter import SlackAdapter
from openpista_slack.settings import parse_settings
from openpista_slack.testing import SlackEmulator, User
from openpista_testing.adapters import QueueContext
from openpista_testing.emulator import LlmEmulator

Serve = Callable[..., Awaitable[SlackAdapter]]
Table = Callable[..., dict[str, Any]]


def texts(slack: SlackEmulator, channel: str) -> list[str]:
    return [m.text for m in slack.messages if m.channel == channel]


async def test_429_waits_retry_after_and_5xx_is_retried(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("delivered anyway")
    await serve(stream_interval=5)
    slack.fail_next("chat.postMessage", 429, retry_after=1)
    slack.fail_next("chat.update", 503, error="service_unavailable", times=2)
    slack.dm(alice, "hello")
    await slack.wait_until(lambda: texts(slack, alice.dm) == ["delivered anyway"])
    assert slack.early_retries == 0  # nothing came back before Retry-After was over
    assert slack.calls.count("chat.postMessage") == 2
    assert slack.calls.count("chat.update") >= 3  # two 503s, then the answer


async def test_a_wrong_token_is_one_line_and_not_retried(
    slack: SlackEmulator, table: Table
) -> None:
    adapter = SlackAdapter(parse_settings(table(bot_token="xoxb-wrong-secret")))
    with pytest.raises(ConfigError) as caught:
        await adapter.start(QueueContext())
    message = str(caught.value)
    assert "invalid_auth" in message
    assert "bot_token" in message
    assert "\n" not in message
    assert "wrong-secret" not in message


async def test_a_wrong_app_token_is_one_line(slack: SlackEmulator, table: Table) -> None:
    adapter = SlackAdapter(parse_settings(table(app_token="xapp-wrong")))
    with pytest.raises(ConfigError, match=r"invalid_auth.*app_token"):
        await adapter.start(QueueContext())


async def test_a_missing_scope_is_named(
    serve: Serve,
    slack: SlackEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await serve()
    slack.revoke_scope("chat:write")
    slack.dm(alice, "hello")
    line = await slack.wait_until(
        lambda: next((r.getMessage() for r in caplog.records if "chat:write" in r.getMessage()), "")
    )
    assert line.startswith("❌ slack: chat.postMessage needs the scope chat:write")
    assert "reinstall" in line
    assert llm_emulator.requests == []  # not asked: the answer could not be shown


async def test_an_unreachable_slack_is_retried_by_the_gateway(table: Table) -> None:
    adapter = SlackAdapter(parse_settings(table(api_base="http://127.0.0.1:9/api/", max_retries=0)))
    with pytest.raises(ConnectionError, match=re.escape("cannot reach http://127.0.0.1:9/api/")):
        await adapter.start(QueueContext())


async def test_the_socket_reconnects(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    for text in ("one", "two", "three"):
        llm_emulator.reply_text(text)
    await serve()
    slack.dm(alice, "first")
    await slack.wait_until(lambda: texts(slack, alice.dm) == ["one"])
    slack.disconnect("refresh_requested")  # Slack asks for a new connection
    await slack.wait_until(lambda: slack.connections == 2)
    slack.dm(alice, "second")
    await slack.wait_until(lambda: texts(slack, alice.dm) == ["one", "two"])
    slack.drop()  # the connection dies without a word
    slack.dm(alice, "third")  # waits for the next connection
    await slack.wait_until(lambda: slack.connections == 3)
    await slack.wait_until(lambda: texts(slack, alice.dm) == ["one", "two", "three"])


async def test_tokens_never_reach_the_log(
    serve: Serve,
    slack: SlackEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    llm_emulator.reply_text("fine")
    await serve(mode="http")
    slack.dm(alice, "hello")
    await slack.wait_until(lambda: texts(slack, alice.dm) == ["fine"])
    slack.fail_next("chat.postMessage", 500, error="internal_error", times=10)
    llm_emulator.reply_text("this one fails")
    slack.dm(alice, "again")
    await slack.wait_until(lambda: slack.calls.count("chat.postMessage") >= 5)
    logged = caplog.text
    assert logged
    for secret in (slack.bot_token, slack.app_token, slack.signing_secret):
        assert secret not in logged
