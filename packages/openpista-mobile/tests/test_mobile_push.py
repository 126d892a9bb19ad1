"""Server push: answers nobody waits for on a stream reach the device's live connections
(or its outbox) on server-initiated unidirectional streams; never another device."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from openpista.config import Settings
from openpista.gateway.gateway import Gateway
from openpista.models import Answer, ChannelEvent, Outbound
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient, MobileError
from openpista_mobile.protocol import AppError
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways

PHONE_TOKEN = "phone-token-0123456789abcdef"
TABLET_TOKEN = "tablet-token-0123456789abcdef"

Connect = Callable[..., Awaitable[MobileClient]]


def cron(text: str, device: str = "phone") -> ChannelEvent:
    """What the daemon's scheduler submits for ``[[cron]] channel = "mobile:<device>"``."""
    return ChannelEvent(channel_id=f"mobile:{device}", sender="cron", text=text)


async def next_push(client: MobileClient) -> Answer:
    pushes = client.pushed()
    try:
        return answer_of(await asyncio.wait_for(anext(pushes), 60))
    finally:
        await pushes.aclose()


def answer_of(message: Outbound) -> Answer:
    """``message``, which must be an answer (what the pushes here are)."""
    assert isinstance(message, Answer), message
    return message


async def test_a_cron_message_reaches_the_connected_device_as_a_push(
    connect: Connect, gateways: Gateways, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("disk is 41% full", chunk_size=4)
    phone, tablet = await connect(), await connect("tablet", TABLET_TOKEN)
    await phone.check()
    await tablet.check()
    gateway: Gateway = gateways.opened[0]
    await gateway.submit(cron("morning report"))
    pushed = await next_push(phone)
    assert (pushed.text, pushed.channel_id) == ("disk is 41% full", "mobile:phone")
    assert pushed.session_id
    assert phone.unread_pushes == 0, "deltas of a turn nobody asked on a stream are not pushed"
    llm_emulator.reply_text("tablet answer")
    assert (await tablet.answer("hello")).text == "tablet answer"
    assert tablet.unread_pushes == 0, "the tablet received the phone's push"


async def test_an_answer_outliving_its_connection_is_pushed_to_the_new_one(
    connect: Connect, llm_emulator: LlmEmulator, settings: Settings, tmp_path: Path
) -> None:
    settings.policy.remote = "allow"
    flag = tmp_path / "go"
    wait_for_flag = f"while [ ! -e {flag} ]; do sleep 0.05; done; echo released"
    llm_emulator.reply_tool_calls([("system_run", {"command": wait_for_flag})])
    llm_emulator.reply_text("the slow answer")
    first = await connect(early_data=False)
    async for response in first.ask("slow question", request_id="slow-1"):
        if response.kind == "tool":
            break
    await first.close()
    second = await connect()
    await second.check()
    flag.touch()
    pushed = await next_push(second)
    assert (pushed.text, pushed.request_id) == ("the slow answer", "slow-1")


async def test_the_outbox_keeps_the_newest_pushes_in_order_until_the_device_connects(
    serve: Callable[..., Awaitable[MobileAdapter]],
    gateways: Gateways,
    llm_emulator: LlmEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    mobile = await serve(outbox_size=2)
    gateway: Gateway = gateways.opened[0]
    for text in ("one", "two", "three"):
        llm_emulator.reply_text(f"answer {text}")
        await gateway.handle(cron(text))
    assert "outbox of device phone is full (2); dropped its oldest push 1" in caplog.text

    async def open_(device: str, token: str) -> MobileClient:
        client = await MobileClient.connect(
            f"quic://127.0.0.1:{mobile.port}",
            token,
            device,
            fingerprint=mobile.fingerprint,
            tickets=tmp_path / "tickets",
        )
        await client.check()
        return client

    tablet = await open_("tablet", TABLET_TOKEN)
    phone = await open_("phone", PHONE_TOKEN)
    try:
        received = [await next_push(phone), await next_push(phone)]
        assert [r.text for r in received] == ["answer two", "answer three"]
        llm_emulator.reply_text("tablet answer")
        assert (await tablet.answer("hi")).text == "tablet answer"
        assert tablet.unread_pushes == 0
        # Delivered once: a second connection of the phone gets nothing from the outbox.
        again = await open_("phone", PHONE_TOKEN)
        llm_emulator.reply_text("fresh")
        assert (await again.answer("anything new?")).text == "fresh"
        assert again.unread_pushes == 0
        await again.close()
    finally:
        await phone.close()
        await tablet.close()


async def test_intruders_never_receive_a_devices_pushes(
    connect: Connect, gateways: Gateways, llm_emulator: LlmEmulator
) -> None:
    gateway: Gateway = gateways.opened[0]
    llm_emulator.reply_text("the phone's secret report")
    await gateway.handle(cron("report"))  # the phone is offline: kept in its outbox
    impostor = await connect("phone", TABLET_TOKEN)  # the tablet's token, the phone's id
    with pytest.raises(MobileError) as refused:
        await impostor.check()
    assert refused.value.code == AppError.UNAUTHORIZED
    assert [r async for r in impostor.pushed()] == []
    anonymous = await connect(device=None, token=None)  # no auth frame at all
    tablet = await connect("tablet", TABLET_TOKEN)
    await tablet.check()
    phone = await connect()
    await phone.check()
    assert (await next_push(phone)).text == "the phone's secret report"
    llm_emulator.reply_text("tablet answer")
    assert (await tablet.answer("hi")).text == "tablet answer"
    assert (tablet.unread_pushes, anonymous.unread_pushes) == (0, 0)


async def test_an_answer_for_an_unknown_device_is_dropped_with_a_log_line(
    connect: Connect,
    gateways: Gateways,
    llm_emulator: LlmEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    llm_emulator.reply_text("for nobody")
    await gateways.opened[0].handle(cron("report", device="ghost"))
    assert "no device 'ghost' is configured" in caplog.text


async def test_a_full_outbox_arrives_in_order_and_a_burst_of_live_pushes_arrives_whole(
    serve: Callable[..., Awaitable[MobileAdapter]], tmp_path: Path
) -> None:
    mobile = await serve(outbox_size=300)
    count = 300  # aioquic grants 128 unidirectional streams at first: credit must be renewed
    for number in range(count):
        await mobile.send(Answer(channel_id="mobile:phone", text=f"kept {number}"))
    async with await MobileClient.connect(
        f"quic://127.0.0.1:{mobile.port}",
        PHONE_TOKEN,
        "phone",
        fingerprint=mobile.fingerprint,
        tickets=tmp_path / "tickets",
    ) as phone:
        await phone.check()
        pushes = phone.pushed()
        kept = [await asyncio.wait_for(anext(pushes), 60) for _ in range(count)]
        assert [answer_of(r).text for r in kept] == [f"kept {number}" for number in range(count)]
        for number in range(count):  # live: one stream each, put back in order by the client
            await mobile.send(Answer(channel_id="mobile:phone", text=f"live {number}"))
        live = [await asyncio.wait_for(anext(pushes), 60) for _ in range(count)]
        await pushes.aclose()
    assert [answer_of(r).text for r in live] == [f"live {number}" for number in range(count)]


async def test_the_outbox_outlives_a_restart_of_the_daemon(
    serve: Callable[..., Awaitable[MobileAdapter]],
    gateways: Gateways,
    llm_emulator: LlmEmulator,
    tmp_path: Path,
    home: Path,
) -> None:
    """Pushes kept for an offline phone reach it from the next daemon, once, in order."""
    await serve()
    for text in ("one", "two"):
        llm_emulator.reply_text(f"answer {text}")
        await gateways.opened[0].handle(cron(text))
    stored = home / "mobile" / "outbox.json"
    assert stored.stat().st_mode & 0o777 == 0o600  # it holds answers
    await gateways.close()

    mobile = await serve()
    phone = await MobileClient.connect(
        f"quic://127.0.0.1:{mobile.port}",
        PHONE_TOKEN,
        "phone",
        fingerprint=mobile.fingerprint,
        tickets=tmp_path / "tickets",
    )
    try:
        await phone.check()
        received = [await next_push(phone), await next_push(phone)]
        assert [r.text for r in received] == ["answer one", "answer two"]
        llm_emulator.reply_text("answer three")
        await gateways.opened[-1].handle(cron("three"))  # live: numbered after the others
        assert (await next_push(phone)).text == "answer three"
    finally:
        await phone.close()
    assert '"phone": {"seq": 3, "frames": []}' in stored.read_text()  # delivered, numbered on


async def test_a_damaged_outbox_file_is_set_aside_and_the_channel_serves(
    serve: Callable[..., Awaitable[MobileAdapter]],
    llm_emulator: LlmEmulator,
    home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for damaged in ('{"phone": {"seq": 1', '{"phone": {"seq": "x", "frames": 7}}', "[1]"):
        (home / "mobile").mkdir(parents=True, exist_ok=True)
        (home / "mobile" / "outbox.json").write_text(damaged)
        mobile = await serve()
        phone = await MobileClient.connect(
            f"quic://127.0.0.1:{mobile.port}",
            PHONE_TOKEN,
            "phone",
            fingerprint=mobile.fingerprint,
            tickets=tmp_path / "tickets",
        )
        try:
            llm_emulator.reply_text("still here")
            assert (await phone.answer("hello")).text == "still here"
        finally:
            await phone.close()
        assert "is unreadable" in caplog.text
        assert (home / "mobile" / "outbox.json.damaged").read_text() == damaged
        caplog.clear()
