"""HTTP Events API mode: Slack's signed POSTs on the EmbeddedServer, checked before parsing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from openpista.config import PolicySettings
from openpista_slack.adapter import APPROVE, SlackAdapter
from openpista_slack.settings import parse_settings
from openpista_slack.testing import SlackEmulator, User
from openpista_testing.adapters import HeldContext
from openpista_testing.emulator import LlmEmulator

Serve = Callable[..., Awaitable[SlackAdapter]]


def dm_event(user: User, text: str, event_id: str = "Ev0001") -> bytes:
    event = {
        "type": "message",
        "user": user.id,
        "text": text,
        "ts": "1700000000.000100",
        "channel": user.dm,
        "channel_type": "im",
        "team": user.team,
    }
    payload = {
        "token": "verification-token",
        "team_id": user.team,
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }
    return json.dumps(payload).encode()


async def test_signed_events_are_served(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("over HTTP")
    await serve(mode="http")
    slack.dm(alice, "hello")
    [reply] = await slack.wait_for_messages(1, channel=alice.dm)
    await slack.wait_until(lambda: reply.text == "over HTTP")
    assert slack.deliveries == [(200, "")]
    assert "apps.connections.open" not in slack.calls  # no socket in HTTP mode


async def test_url_verification_answers_the_challenge(serve: Serve, slack: SlackEmulator) -> None:
    await serve(mode="http")
    body = json.dumps(
        {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV", "type": "url_verification"}
    )
    status, text = await slack.post_signed(body.encode())
    assert (status, json.loads(text)) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV"})


async def test_unsigned_wrong_and_stale_requests_are_refused(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    await serve(mode="http")
    body = dm_event(alice, "let me in")
    signed = slack.sign(body)
    json_type = {"Content-Type": "application/json"}
    wrong = {**signed, "X-Slack-Signature": "v0=" + "0" * 64}
    stale = slack.sign(body, timestamp=int(time.time()) - 301)
    future = slack.sign(body, timestamp=int(time.time()) + 301)
    other_body = slack.sign(dm_event(alice, "something else"))
    cases = {
        "missing": json_type,
        "no timestamp": {**json_type, "X-Slack-Signature": signed["X-Slack-Signature"]},
        "wrong": {**json_type, **wrong},
        "stale": {**json_type, **stale},
        "future": {**json_type, **future},
        "another body's": {**json_type, **other_body},
        "garbage timestamp": {**json_type, **signed, "X-Slack-Request-Timestamp": "12ab"},
    }
    for name, headers in cases.items():
        status, _ = await slack.post_signed(body, headers)
        assert status == 401, name
    assert slack.messages == []
    assert llm_emulator.requests == []


async def test_retried_deliveries_are_answered_once(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("just once")
    llm_emulator.reply_text("the answer to the next message")
    await serve(mode="http")
    body = dm_event(alice, "hello", event_id="Ev0RETRY")
    assert (await slack.post_signed(body))[0] == 200
    for attempt in ("1", "2"):
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Retry-Num": attempt,
            "X-Slack-Retry-Reason": "http_timeout",
            **slack.sign(body),
        }
        assert (await slack.post_signed(body, headers))[0] == 200
    [reply] = await slack.wait_for_messages(1, channel=alice.dm)
    await slack.wait_until(lambda: reply.text == "just once")
    slack.dm(alice, "a new message is served")  # the adapter is still listening
    second = (await slack.wait_for_messages(2, channel=alice.dm))[1]
    await slack.wait_until(lambda: second.text == "the answer to the next message")
    assert len(llm_emulator.requests) == 2


async def test_oversized_and_malformed_bodies(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator
) -> None:
    await serve(mode="http", max_body_bytes=4096)
    status, _ = await slack.post_signed(b'{"type": "event_callback", "x": "' + b"a" * 5000 + b'"}')
    assert status == 413
    for body in (b"{not json", b'{"a":' * 200 + b"1" + b"}" * 200, b"[1, 2]"):
        status, _ = await slack.post_signed(body)
        assert status == 400, body[:20]
    assert llm_emulator.requests == []


async def test_slash_commands_and_buttons_over_http(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo over-http"})])
    llm_emulator.reply(lambda body: "tool said: " + body["messages"][-1]["content"])
    await serve(mode="http", policy=PolicySettings(remote="ask", approval_timeout=30))
    slack.slash_command(alice, alice.dm, "help")  # form-encoded, as Slack posts it
    await slack.wait_until(lambda: slack.responses)
    assert "/model" in slack.responses[0]["text"]
    slack.slash_command(alice, alice.dm, "ask run it")
    prompt = await slack.wait_until(lambda: next((m for m in slack.messages if m.buttons), None))
    slack.press(alice, prompt, APPROVE)  # form-encoded payload=JSON
    await slack.wait_until(lambda: not prompt.buttons)
    await slack.wait_until(
        lambda: any(
            m.text.startswith("tool said:") and "over-http" in m.text for m in slack.messages
        )
    )
    assert all(status == 200 for status, _ in slack.deliveries)


async def test_a_question_where_the_app_cannot_post_is_answered_privately(
    serve: Serve, slack: SlackEmulator, alice: User
) -> None:
    await serve()
    slack.fail_next("chat.postMessage", 200, error="not_in_channel")
    slack.slash_command(alice, "C0ELSEWHERE", "what is up?")
    await slack.wait_until(lambda: slack.responses)
    assert slack.responses[0]["text"] == "❌ slack: chat.postMessage failed: not_in_channel"


async def start_held(
    table: Callable[..., dict[str, Any]], ctx: HeldContext, **options: Any
) -> SlackAdapter:
    adapter = SlackAdapter(parse_settings(table(mode="http", **options)))
    await adapter.start(ctx)
    return adapter


async def test_an_event_is_answered_only_after_submit_returned(
    slack: SlackEmulator, table: Callable[..., dict[str, Any]], alice: User
) -> None:
    ctx = HeldContext()
    ctx.release.clear()
    adapter = await start_held(table, ctx, event_answer_timeout=30)
    try:
        posting = asyncio.create_task(slack.post_signed(dm_event(alice, "keep me")))
        await asyncio.wait_for(ctx.called.wait(), 20)
        await asyncio.sleep(0.2)
        assert not posting.done()  # submit has not returned: no answer yet
        ctx.release.set()
        assert (await asyncio.wait_for(posting, 20))[0] == 200
        event = ctx.events.get_nowait()
        assert (event.text, event.delivery_id) == ("keep me", f"{alice.dm}:1700000000.000100")
    finally:
        await adapter.stop()


async def test_a_failed_submit_is_answered_500_and_the_retry_is_handled(
    slack: SlackEmulator,
    table: Callable[..., dict[str, Any]],
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="openpista_slack")
    ctx = HeldContext()
    ctx.failures.append(ConnectionError("database unreachable"))
    adapter = await start_held(table, ctx)
    try:
        body = dm_event(alice, "store me", event_id="Ev0FAIL")
        assert (await slack.post_signed(body))[0] == 500
        lines = [r for r in caplog.records if "Slack sends it again" in r.getMessage()]
        assert len(lines) == 1
        assert "database unreachable" in lines[0].getMessage()
        retry = {"Content-Type": "application/json", "X-Slack-Retry-Num": "1", **slack.sign(body)}
        assert (await slack.post_signed(body, retry))[0] == 200
        event = ctx.events.get_nowait()
        first, second = ctx.calls
        assert first.delivery_id == second.delivery_id == event.delivery_id
        assert (await slack.post_signed(body, retry))[0] == 200  # handled: acked at once
        assert len(ctx.calls) == 2
        slack.dm(alice, "next")  # the channel keeps serving
        assert (await asyncio.wait_for(ctx.events.get(), 20)).text == "next"
    finally:
        await adapter.stop()


async def test_a_slow_event_is_answered_500_and_its_retry_waits_for_it(
    slack: SlackEmulator, table: Callable[..., dict[str, Any]], alice: User
) -> None:
    ctx = HeldContext()
    ctx.release.clear()
    adapter = await start_held(table, ctx, event_answer_timeout=0.3)
    try:
        body = dm_event(alice, "slow", event_id="Ev0SLOW")
        assert (await slack.post_signed(body))[0] == 500
        retry = asyncio.create_task(slack.post_signed(body))  # joins the handling under way
        await asyncio.sleep(0.1)
        ctx.release.set()
        assert (await retry)[0] == 200
        assert ctx.events.get_nowait().text == "slow"
        assert len(ctx.calls) == 1
    finally:
        await adapter.stop()
