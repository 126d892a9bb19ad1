"""Webhook mode end to end: the Bot API emulator POSTs updates over loopback to the channel's
webhook (uvicorn in the gateway's loop), the real gateway answers through the LLM emulator.
Also: downloads capped by the bytes actually received."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista import jsonsafe
from openpista.access import REFUSAL
from openpista_telegram.adapter import TelegramAdapter
from openpista_telegram.testing import SECRET_HEADER, TelegramEmulator, User
from openpista_testing.adapters import HeldContext, QueueContext
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually
from openpista_testing.ports import free_port

Serve = Callable[..., Awaitable[TelegramAdapter]]
SECRET = "configured_Secret-0123456789"


async def serve_webhook(serve: Serve, telegram: TelegramEmulator, **options: Any) -> str:
    """Start the channel in webhook mode; returns the secret token it registered."""
    port = free_port()
    await serve(
        mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/hook",
        webhook_port=port,
        webhook_path="/hook",
        **options,
    )
    webhook = await telegram.wait_for_webhook()
    return str(webhook["secret_token"])


def message_update(user: User, text: str, update_id: int = 9001) -> dict[str, Any]:
    chat = {"id": user.id, "type": "private", "first_name": user.first_name}
    message = {"message_id": 7, "date": 0, "chat": chat, "from": user.as_json(), "text": text}
    return {"update_id": update_id, "message": message}


async def test_webhook_round_trip_with_a_generated_secret(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User, home: Path
) -> None:
    llm_emulator.reply_text("hello over the webhook")
    secret = await serve_webhook(serve, telegram)
    assert secret == (home / "telegram" / "webhook_secret").read_text()  # generated, kept
    assert (home / "telegram" / "webhook_secret").stat().st_mode & 0o777 == 0o600
    [(method, params)] = telegram.webhook_calls
    assert method == "setWebhook"
    assert params["secret_token"] == secret
    assert params["drop_pending_updates"] in (False, "false")
    assert json.loads(params["allowed_updates"]) == ["message", "callback_query"]
    telegram.send_text(alice.id, "hi via webhook", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text == "hello over the webhook"
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "hi via webhook"
    assert "getUpdates" not in telegram.requests  # no polling in webhook mode
    assert [status for _, status in telegram.deliveries] == [200]


async def test_webhook_secret_is_reused_and_order_is_kept(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User, home: Path
) -> None:
    (home / "telegram").mkdir(parents=True)
    (home / "telegram" / "webhook_secret").write_text("kept_secret_from_last_run")
    llm_emulator.default_reply = lambda body: "echo: " + body["messages"][-1]["content"]
    assert await serve_webhook(serve, telegram) == "kept_secret_from_last_run"
    for word in ("one", "two", "three"):
        telegram.send_text(alice.id, word, user=alice)
    sent = await telegram.wait_for_sent(3, chat_id=alice.id)
    assert [m.text for m in sent] == ["echo: one", "echo: two", "echo: three"]
    asked = [r.json["messages"][-1]["content"] for r in llm_emulator.requests]
    assert asked == ["one", "two", "three"]


async def test_wrong_or_missing_secret_is_refused_and_nothing_reaches_the_agent(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert await serve_webhook(serve, telegram, webhook_secret=SECRET) == SECRET
    update = message_update(alice, "sneaky")
    assert (await telegram.post_to_webhook(update, headers={}))[0] == 401
    wrong = {SECRET_HEADER: SECRET[:-1] + "x"}
    assert (await telegram.post_to_webhook(update, headers=wrong))[0] == 403
    assert (await telegram.post_to_webhook(update, headers={SECRET_HEADER: ""}))[0] == 401
    await asyncio.sleep(0.5)
    assert llm_emulator.requests == []
    assert telegram.sent == []
    assert "wrong secret token refused" in caplog.text
    assert SECRET not in caplog.text
    assert telegram.token not in caplog.text


async def test_malformed_oversized_and_unknown_posts(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("still here")
    await serve_webhook(serve, telegram, max_webhook_bytes=4096)
    assert (await telegram.post_to_webhook(b"{not json"))[0] == 400
    assert (await telegram.post_to_webhook(b"\xff\xfe"))[0] == 400
    assert (await telegram.post_to_webhook(b"[1, 2]"))[0] == 400
    assert (await telegram.post_to_webhook({"message": {"text": "no id"}}))[0] == 400
    big = message_update(alice, "x" * 5000)
    status, text = await telegram.post_to_webhook(big)
    assert (status, text) == (413, "body larger than 4096 bytes")
    assert (await telegram.post_to_webhook({"update_id": 1, "future_kind": {}}))[0] == 200
    bad_shape = {"update_id": 2, "message": {"message_id": "x", "chat": 5}}
    assert (await telegram.post_to_webhook(bad_shape))[0] == 200  # skipped, not resent forever
    await asyncio.sleep(0.3)
    assert llm_emulator.requests == []
    telegram.send_text(alice.id, "are you ok?", user=alice)  # delivered by the emulator
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text == "still here"


async def test_stranger_is_refused_in_webhook_mode(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    await serve_webhook(serve, telegram)
    telegram.send_text(mallory.id, "let me in", user=mallory)
    [reply] = await telegram.wait_for_sent(1, chat_id=mallory.id)
    assert reply.text == REFUSAL
    await asyncio.sleep(0.3)
    assert llm_emulator.requests == []


async def test_stop_closes_the_endpoint_and_keeps_the_webhook(
    telegram: TelegramEmulator, table: Callable[..., dict[str, Any]], alice: User
) -> None:
    from openpista_telegram.settings import parse_settings

    port = free_port()
    options = {"mode": "webhook", "webhook_url": f"http://127.0.0.1:{port}/telegram/webhook"}
    adapter = TelegramAdapter(parse_settings(table(webhook_port=port, **options)))
    ctx = QueueContext()
    await adapter.start(ctx)
    waiting = asyncio.create_task(adapter.wait_closed())
    telegram.send_text(alice.id, "one", user=alice)
    event = await asyncio.wait_for(ctx.events.get(), 20)
    assert (event.channel_id, event.text) == (f"telegram:{alice.id}", "one")
    await adapter.stop()
    await asyncio.wait_for(waiting, 10)  # a stop is a clean end, not a failure
    with pytest.raises(ConnectionRefusedError):
        await telegram.post_to_webhook(message_update(alice, "anyone?"))
    assert telegram.webhook is not None  # Telegram keeps updates until the channel is back
    assert [m for m, _ in telegram.webhook_calls] == ["setWebhook"]
    assert not [t for t in asyncio.all_tasks() if "telegram" in t.get_name()]


async def test_refused_webhook_registration_is_a_clear_error(
    serve: Serve, telegram: TelegramEmulator, table: Callable[..., dict[str, Any]]
) -> None:
    from openpista_telegram.settings import parse_settings

    telegram.fail_next(400, "Bad Request: bad webhook: Failed to resolve host", method="setWebhook")
    port = free_port()
    settings = parse_settings(
        table(
            mode="webhook",
            webhook_url=f"http://127.0.0.1:{port}/x",
            webhook_port=port,
            webhook_secret=SECRET,
        )
    )
    adapter = TelegramAdapter(settings)
    with pytest.raises(ConnectionError) as failure:
        await adapter.start(QueueContext())
    await adapter.stop()
    assert "Telegram refused the webhook" in str(failure.value)
    assert "Failed to resolve host" in str(failure.value)
    assert SECRET not in str(failure.value)
    with socket.socket() as sock:  # the endpoint was closed again
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    "report", [{"hide_size": True}, {"size": 10}], ids=["no-size", "understated"]
)
async def test_download_is_capped_by_received_bytes(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    home: Path,
    report: dict[str, Any],
) -> None:
    await serve(max_download_bytes=100_000)
    telegram.send_document(alice.id, b"x" * 300_000, "huge.bin", user=alice, **report)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text == (
        "❌ could not take your file: huge.bin is larger than the limit of 0.1 MB"
    )
    folder = home / "telegram" / "files" / str(alice.id)
    assert list(folder.iterdir()) == []  # the partial file is gone
    assert llm_emulator.requests == []


async def test_deeply_nested_json_is_refused_with_400_and_one_log_line(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jsonsafe.REJECTIONS.reset()  # no quiet spell left by other tests
    llm_emulator.reply_text("unharmed")
    await serve_webhook(serve, telegram)
    caplog.set_level(logging.WARNING)
    caplog.clear()
    nested = b'{"update_id": 5, "message": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    for _ in range(3):
        status, text = await telegram.post_to_webhook(nested)
        assert status == 400
        assert "nested too deeply" in text
    too_deep = b'{"update_id": 6, "message": {"x": ' + b"[" * 70 + b"]" * 70 + b"}}"
    assert (await telegram.post_to_webhook(too_deep))[0] == 400
    refusals = [r for r in caplog.records if "refused a body" in r.getMessage()]
    assert len(refusals) == 1  # rate-limited: one line, not one per POST
    assert all(r.exc_info is None for r in caplog.records)  # no traceback
    telegram.send_text(alice.id, "still there?", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text == "unharmed"


async def start_held(
    table: Callable[..., dict[str, Any]], ctx: HeldContext, **options: Any
) -> TelegramAdapter:
    from openpista_telegram.settings import parse_settings

    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    adapter = TelegramAdapter(
        parse_settings(table(mode="webhook", webhook_url=url, webhook_port=port, **options))
    )
    await adapter.start(ctx)
    return adapter


async def test_the_post_is_answered_only_after_submit_returned(
    telegram: TelegramEmulator, table: Callable[..., dict[str, Any]], alice: User
) -> None:
    ctx = HeldContext()
    ctx.release.clear()
    adapter = await start_held(table, ctx)
    try:
        await telegram.wait_for_webhook()
        update = telegram.text_update(alice.id, "keep me", user=alice)
        posting = asyncio.create_task(telegram.post_to_webhook(update))
        await asyncio.wait_for(ctx.called.wait(), 20)
        await asyncio.sleep(0.2)
        assert not posting.done()  # submit has not returned: no answer yet
        ctx.release.set()
        assert await asyncio.wait_for(posting, 20) == (200, "ok")
        event = ctx.events.get_nowait()
        chat, message_id = alice.id, update["message"]["message_id"]
        assert (event.text, event.delivery_id) == ("keep me", f"{chat}:{message_id}")
    finally:
        await adapter.stop()


async def test_a_failed_submit_is_answered_503_and_delivered_again(
    telegram: TelegramEmulator,
    table: Callable[..., dict[str, Any]],
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="openpista_telegram")
    ctx = HeldContext()
    ctx.failures.append(ConnectionError("database unreachable"))
    adapter = await start_held(table, ctx)
    try:
        update = telegram.send_text(alice.id, "store me", user=alice)  # the emulator resends
        event = await asyncio.wait_for(ctx.events.get(), 20)
        assert event.text == "store me"
        first, second = ctx.calls
        assert first.delivery_id == second.delivery_id == event.delivery_id
        statuses = [503, 200]
        await eventually(
            lambda: [s for u, s in telegram.deliveries if u == update["update_id"]] == statuses
        )
        lines = [r for r in caplog.records if "send it again" in r.getMessage()]
        assert len(lines) == 1
        assert "database unreachable" in lines[0].getMessage()
        assert lines[0].exc_info is None  # one line, no traceback
        telegram.send_text(alice.id, "next", user=alice)  # the channel keeps serving
        assert (await asyncio.wait_for(ctx.events.get(), 20)).text == "next"
    finally:
        await adapter.stop()


async def test_handling_past_the_timeout_is_cancelled_and_answered_503(
    telegram: TelegramEmulator, table: Callable[..., dict[str, Any]], alice: User
) -> None:
    ctx = HeldContext()
    ctx.release.clear()  # the first submit never returns on its own
    adapter = await start_held(table, ctx, webhook_answer_timeout=0.3)
    try:
        await telegram.wait_for_webhook()
        update = telegram.text_update(alice.id, "slow", user=alice)
        assert (await telegram.post_to_webhook(update))[0] == 503
        assert len(ctx.calls) == 1
        ctx.release.set()
        await asyncio.sleep(0.2)
        assert ctx.events.empty()  # the timed-out handling was cancelled, not submitted late
        assert await telegram.post_to_webhook(update) == (200, "ok")  # Telegram's retry
        event = ctx.events.get_nowait()
        assert event.delivery_id == ctx.calls[0].delivery_id
    finally:
        await adapter.stop()


async def test_a_button_press_carries_its_query_id_as_delivery_id(
    telegram: TelegramEmulator, table: Callable[..., dict[str, Any]], alice: User
) -> None:
    from openpista.buttons import button_id

    ctx = HeldContext()
    ctx.pending.add((f"telegram:{alice.id}", "req1"))
    adapter = await start_held(table, ctx)
    try:
        update = telegram.press_button(alice.id, 77, button_id("approve", "req1"), user=alice)
        event = await asyncio.wait_for(ctx.events.get(), 20)
        assert event.text == "/approve req1"
        assert event.delivery_id == f"press:{update['callback_query']['id']}"
    finally:
        await adapter.stop()
