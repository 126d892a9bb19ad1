"""The adapter over real HTTP: Meta's side is a signed webhook POST, the Graph API is the
emulator. Verification, signatures, bad input, duplicates, access, media, retries, windows."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from openpista import jsonsafe
from openpista.access import PAIRED, REFUSAL, PairingBook
from openpista.cluster_media import pack, unpack
from openpista.models import Answer, ApprovalPrompt, ApprovalRequest, Attachment
from openpista_testing.adapters import HeldContext
from openpista_whatsapp.testing import (
    WhatsAppEmulator,
    message,
    text_payload,
    webhook_payload,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
)
Start = Any  # the start_adapter fixture: await start(**options) -> Running


async def test_verification_challenge(start_adapter: Start) -> None:
    wa = await start_adapter()
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": wa.verify_token,
        "hub.challenge": "1158201444",
    }
    answer = await wa.http.get(wa.url, params=query)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    for wrong in ({"hub.verify_token": "nope"}, {"hub.mode": "unsubscribe"}, {"hub.challenge": ""}):
        answer = await wa.http.get(wa.url, params={**query, **wrong})
        assert answer.status_code == 403
        assert "1158201444" not in answer.text


async def test_text_message_becomes_an_event_and_the_answer_is_sent(
    start_adapter: Start, graph: WhatsAppEmulator
) -> None:
    wa = await start_adapter()
    answer = await wa.post(text_payload(wa.number, wa.user, "hello agent"))
    assert answer.status_code == 200
    event = await wa.event()
    assert (event.channel_id, event.sender, event.text) == (
        f"whatsapp:{wa.user}",
        wa.user,
        "hello agent",
    )
    assert event.metadata["phone_number_id"] == wa.number
    assert event.metadata["name"] == "Test User"
    await wa.adapter.send(Answer(channel_id=event.channel_id, text="hello human"))
    (sent,) = await graph.wait_for_sent(1)
    assert sent.phone_number_id == wa.number
    assert sent.body["to"] == wa.user
    assert sent.body["text"]["body"] == "hello human"


async def test_long_answers_are_split(start_adapter: Start, graph: WhatsAppEmulator) -> None:
    wa = await start_adapter()
    await wa.post(text_payload(wa.number, wa.user, "tell me a lot"))
    event = await wa.event()
    long = " ".join(f"word{i}" for i in range(2000))
    for part in wa.adapter.capabilities.split(Answer(channel_id=event.channel_id, text=long)):
        await wa.adapter.send(part)  # what the gateway sends
    bodies = [s.body["text"]["body"] for s in await graph.wait_for_sent(3)]
    assert all(len(b) <= 4096 for b in bodies)
    assert " ".join(bodies) == long


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
        ({"X-Hub-Signature-256": "md5=abc"}, 403),
    ],
)
async def test_unsigned_or_badly_signed_posts_are_refused(
    start_adapter: Start, headers: dict[str, str], status: int
) -> None:
    wa = await start_adapter()
    body = json.dumps(text_payload(wa.number, wa.user, "sneaky")).encode()
    answer = await wa.http.post(wa.url, content=body, headers=headers)
    assert answer.status_code == status
    signed_with_another_secret = await wa.post(text_payload(wa.number, wa.user, "x"), "wrong")
    assert signed_with_another_secret.status_code == 403
    await wa.settle()
    assert wa.inbound.empty()


async def test_malformed_json_is_a_400(start_adapter: Start) -> None:
    wa = await start_adapter()
    for body in (b"{not json", b"\xff\xfe", b""):
        answer = await wa.post(body)
        assert answer.status_code == 400
    ok = await wa.post(text_payload(wa.number, wa.user, "still alive"))
    assert ok.status_code == 200
    assert (await wa.event()).text == "still alive"


async def test_deeply_nested_json_is_a_400_with_one_log_line(
    start_adapter: Start, caplog: pytest.LogCaptureFixture
) -> None:
    jsonsafe.REJECTIONS.reset()  # no quiet spell left by other tests
    wa = await start_adapter()
    caplog.set_level(logging.WARNING)
    nested = b'{"object": "whatsapp_business_account", "entry": ' + b"[" * 1000 + b"]" * 1000
    for body in (nested + b"}", b'{"entry": [{"changes": ' + b"[" * 70 + b"]" * 70 + b"}]}"):
        for _ in range(2):
            answer = await wa.post(body)
            assert answer.status_code == 400
            assert "nested too deeply" in answer.text
    refusals = [r for r in caplog.records if "refused a body" in r.getMessage()]
    assert len(refusals) == 1  # rate-limited: one line, not one per POST
    assert all(r.exc_info is None for r in caplog.records)  # no traceback
    ok = await wa.post(text_payload(wa.number, wa.user, "still alive"))
    assert ok.status_code == 200
    assert (await wa.event()).text == "still alive"


async def test_oversized_bodies_are_refused_before_parsing(start_adapter: Start) -> None:
    wa = await start_adapter(max_body_bytes=2048)
    payload = text_payload(wa.number, wa.user, "x" * 5000)
    answer = await wa.post(payload)
    assert answer.status_code == 413
    # Without a Content-Length header (chunked), the stream is cut at the limit too.
    from openpista_whatsapp.testing import signed_post

    body, headers = signed_post(payload, wa.app_secret)

    async def chunks() -> Any:
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    answer = await wa.http.post(wa.url, content=chunks(), headers=headers)
    assert answer.status_code == 413
    await wa.settle()
    assert wa.inbound.empty()


async def test_replayed_message_ids_are_processed_once(start_adapter: Start) -> None:
    wa = await start_adapter()
    payload = text_payload(wa.number, wa.user, "once", message_id="wamid.REPLAY")
    for _ in range(3):
        assert (await wa.post(payload)).status_code == 200
    await wa.settle()
    assert (await wa.event()).text == "once"
    assert wa.inbound.empty()


async def test_strangers_are_refused_once_and_reach_nothing(
    start_adapter: Start, graph: WhatsAppEmulator
) -> None:
    wa = await start_adapter()
    stranger = "15550009999"
    for i in range(3):
        await wa.post(text_payload(wa.number, stranger, f"let me in {i}"))
    await wa.settle()
    assert wa.inbound.empty()
    (refusal,) = await graph.wait_for_sent(1)
    assert refusal.body["to"] == stranger
    assert refusal.body["text"]["body"] == REFUSAL
    await asyncio.sleep(0.1)
    assert len(graph.sent) == 1


async def test_a_pairing_code_lets_a_new_number_in(
    start_adapter: Start, graph: WhatsAppEmulator, isolated_home: Path
) -> None:
    wa = await start_adapter()
    code = PairingBook("whatsapp").new_code()
    newcomer = "15550007777"
    await wa.post(text_payload(wa.number, newcomer, f"/pair {code}"))
    (paired,) = await graph.wait_for_sent(1)
    assert paired.body["text"]["body"] == PAIRED
    await wa.post(text_payload(wa.number, newcomer, "hi now"))
    assert (await wa.event()).text == "hi now"


async def test_open_to_all_serves_everyone(start_adapter: Start) -> None:
    wa = await start_adapter(open_to_all=True, allowed_numbers=[])
    await wa.post(text_payload(wa.number, "15550001234", "public hello"))
    assert (await wa.event()).sender == "15550001234"


async def test_statuses_are_recorded_and_failures_logged(
    start_adapter: Start, isolated_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter()
    statuses = [
        {"id": "wamid.S1", "status": "sent", "timestamp": "1700000000", "recipient_id": wa.user},
        {
            "id": "wamid.S1",
            "status": "delivered",
            "timestamp": "1700000001",
            "recipient_id": wa.user,
        },
        {"id": "wamid.S1", "status": "read", "timestamp": "1700000002", "recipient_id": wa.user},
        {
            "id": "wamid.S2",
            "status": "failed",
            "timestamp": "1700000003",
            "recipient_id": wa.user,
            "errors": [{"code": 131026, "title": "Message undeliverable"}],
        },
    ]
    with caplog.at_level(logging.ERROR):
        assert (await wa.post(webhook_payload(wa.number, statuses=statuses))).status_code == 200
        await wa.settle()
    records = wa.adapter.statuses.read()
    assert [(r["message_id"], r["status"]) for r in records] == [
        ("wamid.S1", "sent"),
        ("wamid.S1", "delivered"),
        ("wamid.S1", "read"),
        ("wamid.S2", "failed"),
    ]
    assert wa.adapter.statuses.path == isolated_home / "whatsapp" / "statuses.jsonl"
    assert "wamid.S2" in caplog.text
    assert "131026 Message undeliverable" in caplog.text
    assert wa.inbound.empty()


async def test_unknown_types_are_acknowledged_and_logged(
    start_adapter: Start, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter()
    poll = message(wa.user, "poll", {"question": "?"})
    with caplog.at_level(logging.WARNING):
        answer = await wa.post(webhook_payload(wa.number, [poll]))
    assert answer.status_code == 200
    assert "'poll'" in caplog.text
    await wa.post(
        webhook_payload(
            wa.number, [message(wa.user, "reaction", {"message_id": "w", "emoji": "👍"})]
        )
    )
    await wa.post(text_payload(wa.number, wa.user, "after the poll"))
    assert (await wa.event()).text == "after the poll"  # the reaction started no turn


async def test_media_round_trip(
    start_adapter: Start, graph: WhatsAppEmulator, isolated_home: Path
) -> None:
    wa = await start_adapter()
    media_id = graph.add_media(PNG, "image/png")
    photo = message(
        wa.user, "image", {"id": media_id, "mime_type": "image/png", "caption": "what is this?"}
    )
    await wa.post(webhook_payload(wa.number, [photo]))
    event = await wa.event()
    assert event.text == "what is this?"
    (attachment,) = event.attachments
    assert attachment.mime_type == "image/png"
    assert await asyncio.to_thread(Path(attachment.path).read_bytes) == PNG
    assert Path(attachment.path).parent == isolated_home / "whatsapp" / "media"
    assert base64.b64decode(attachment.data) == PNG
    assert ("GET", f"/download/{media_id}") in graph.requests

    document = isolated_home / "report.csv"
    document.write_text("a,b\n1,2\n")
    reply = Answer(
        channel_id=event.channel_id,
        text="here you go",
        attachments=[
            Attachment(
                name="chart.png", mime_type="image/png", data=base64.b64encode(PNG).decode()
            ),
            Attachment(name="report.csv", mime_type="text/csv", path=str(document)),
            Attachment(name="remote.jpg", mime_type="image/jpeg", url="https://example.org/x.jpg"),
        ],
    )
    await wa.adapter.send(reply)
    sent = await graph.wait_for_sent(4)
    assert [s.body["type"] for s in sent] == ["text", "image", "document", "image"]
    image_id = sent[1].body["image"]["id"]
    assert graph.media[image_id].data == PNG
    assert graph.media[sent[2].body["document"]["id"]].data == b"a,b\n1,2\n"
    assert sent[2].body["document"]["filename"] == "report.csv"
    assert sent[3].body["image"] == {"link": "https://example.org/x.jpg"}


async def test_a_photo_travels_with_its_stored_event_to_the_replica_running_its_turn(
    start_adapter: Start, graph: WhatsAppEmulator, isolated_home: Path, tmp_path: Path
) -> None:
    # In a cluster a message whose files lie under the channel's media_dir (each within
    # max_media_bytes) is stored with their bytes and runs wherever its session's lease is.
    wa = await start_adapter(max_media_bytes=4096)
    assert (wa.adapter.media_dir, wa.adapter.max_media_bytes) == (
        isolated_home / "whatsapp" / "media",
        4096,
    )
    content = {"id": graph.add_media(PNG, "image/png"), "caption": "?"}
    climbing = "wamid.../../../../../tmp/escaped"  # the id names the saved file: kept inside
    photo = message(wa.user, "image", content, message_id=climbing)
    await wa.post(webhook_payload(wa.number, [photo]))
    event = await wa.event()
    assert Path(event.attachments[0].path or "").parent == wa.adapter.media_dir
    stored = pack(event, wa.adapter.media_dir, wa.adapter.max_media_bytes)
    assert stored is not None, "the photo would wait for the lease where it arrived"
    assert stored["attachments"][0]["path"] is None  # no path of this machine in the table
    elsewhere = tmp_path / "other-replica" / "media"
    handed = unpack(json.loads(json.dumps(stored)), lambda _: (elsewhere, 4096), "7")
    (attachment,) = handed.attachments
    assert attachment.path is not None
    assert Path(attachment.path).parent == elsewhere / "handed-over" / "7"
    assert await asyncio.to_thread(Path(attachment.path).read_bytes) == PNG
    assert base64.b64decode(attachment.data or "") == PNG  # still shown to the LLM
    assert pack(event, wa.adapter.media_dir, len(PNG) - 1) is None  # over the limit: waits


async def test_media_over_the_size_cap_is_not_downloaded(
    start_adapter: Start, graph: WhatsAppEmulator
) -> None:
    wa = await start_adapter(max_media_bytes=1024)
    media_id = graph.add_media(b"v" * 5000, "video/mp4")
    await wa.post(webhook_payload(wa.number, [message(wa.user, "video", {"id": media_id})]))
    event = await wa.event()
    assert not event.attachments
    assert "could not be downloaded" in event.text
    assert "max_media_bytes" in event.text
    assert ("GET", f"/download/{media_id}") not in graph.requests


async def test_429_is_retried_then_succeeds(
    start_adapter: Start, graph: WhatsAppEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter()
    await wa.post(text_payload(wa.number, wa.user, "hi"))
    event = await wa.event()
    graph.fail_next(429, 130429, "Rate limit hit", times=2)
    graph.fail_next(500, 1, "An unknown error occurred")
    with caplog.at_level(logging.WARNING):
        await wa.adapter.send(Answer(channel_id=event.channel_id, text="eventually"))
    (sent,) = await graph.wait_for_sent(1)
    assert sent.body["text"]["body"] == "eventually"
    assert caplog.text.count("retry") == 3
    assert wa.token not in caplog.text


async def test_permanent_errors_are_not_retried_and_are_logged(
    start_adapter: Start, graph: WhatsAppEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter()
    await wa.post(text_payload(wa.number, wa.user, "hi"))
    event = await wa.event()
    graph.fail_next(400, 131030, "Recipient phone number not in allowed list")
    calls = len(graph.requests)
    with caplog.at_level(logging.ERROR):
        await wa.adapter.send(Answer(channel_id=event.channel_id, text="nope"))
    assert len(graph.requests) == calls + 1
    assert not graph.sent
    assert "permanent" in caplog.text
    assert "131030" in caplog.text
    assert "Recipient phone number not in allowed list" in caplog.text
    assert wa.token not in caplog.text


async def test_a_wrong_access_token_is_reported_without_showing_it(
    start_adapter: Start, graph: WhatsAppEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter(access_token="EAAG-wrong-token-xyz")
    await wa.post(text_payload(wa.number, wa.user, "hi"))
    event = await wa.event()
    with caplog.at_level(logging.DEBUG):
        await wa.adapter.send(Answer(channel_id=event.channel_id, text="x"))
    assert "Graph error 190" in caplog.text
    assert "EAAG-wrong-token-xyz" not in caplog.text


async def test_approval_requests_become_buttons(
    start_adapter: Start, graph: WhatsAppEmulator
) -> None:
    wa = await start_adapter()
    await wa.post(text_payload(wa.number, wa.user, "run it"))
    event = await wa.event()
    request = ApprovalRequest(id="c0ffee", tool="system.run", arguments={"command": "uptime"})
    await wa.adapter.send(ApprovalPrompt(channel_id=event.channel_id, request=request))
    (sent,) = await graph.wait_for_sent(1)
    assert sent.body["interactive"]["type"] == "button"
    buttons = sent.body["interactive"]["action"]["buttons"]
    assert [b["reply"]["id"] for b in buttons] == ["approve:c0ffee", "deny:c0ffee"]
    press = {"type": "button_reply", "button_reply": {"id": "deny:c0ffee", "title": "🚫 Deny"}}
    await wa.post(webhook_payload(wa.number, [message(wa.user, "interactive", press)]))
    answer = await wa.event()
    assert answer.text == "/deny c0ffee"
    assert answer.channel_id == event.channel_id


async def test_several_numbers_answer_from_the_receiving_number(
    start_adapter: Start, graph: WhatsAppEmulator
) -> None:
    wa = await start_adapter(phone_numbers=[{"phone_number_id": "222222"}])
    await wa.post(text_payload("222222", wa.user, "to the second number"))
    await wa.post(text_payload(wa.number, wa.user, "to the first number"))
    second, first = await wa.event(), await wa.event()
    assert second.channel_id == f"whatsapp:222222:{wa.user}"
    assert first.channel_id == f"whatsapp:{wa.number}:{wa.user}"
    await wa.adapter.send(Answer(channel_id=second.channel_id, text="from two"))
    await wa.adapter.send(Answer(channel_id=first.channel_id, text="from one"))
    sent = await graph.wait_for_sent(2)
    assert [(s.phone_number_id, s.body["text"]["body"]) for s in sent] == [
        ("222222", "from two"),
        (wa.number, "from one"),
    ]
    await wa.post(text_payload("333333", wa.user, "to a number we do not serve"))
    await wa.settle()
    assert wa.inbound.empty()


async def test_outside_the_24_hour_window_the_template_is_sent(
    start_adapter: Start, graph: WhatsAppEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter(template_text_parameter=True)
    old = time.time() - 25 * 3600
    await wa.post(text_payload(wa.number, wa.user, "a day ago", timestamp=old))
    event = await wa.event()
    with caplog.at_level(logging.INFO):
        await wa.adapter.send(Answer(channel_id=event.channel_id, text="late answer"))
        await wa.adapter.send(Answer(channel_id="whatsapp:4915550002", text="cron news"))
    sent = await graph.wait_for_sent(2)
    assert [s.body["type"] for s in sent] == ["template", "template"]
    assert sent[0].body["template"]["name"] == "reengage"
    assert sent[0].body["template"]["components"][0]["parameters"][0]["text"] == "late answer"
    assert "outside the 24-hour window" in caplog.text
    await wa.post(text_payload(wa.number, wa.user, "i am back"))
    event = await wa.event()
    await wa.adapter.send(Answer(channel_id=event.channel_id, text="welcome back"))
    assert (await graph.wait_for_sent(3))[2].body["type"] == "text"


async def test_outside_the_window_without_a_template_nothing_is_sent(
    start_adapter: Start, graph: WhatsAppEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter(template_name=None)
    with caplog.at_level(logging.ERROR):
        await wa.adapter.send(Answer(channel_id=f"whatsapp:{wa.user}", text="hello?"))
    assert "template_name is not set" in caplog.text
    assert not graph.sent


async def test_a_missing_template_is_a_clear_permanent_error(
    start_adapter: Start, graph: WhatsAppEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wa = await start_adapter(template_name="no_such_template")
    with caplog.at_level(logging.ERROR):
        await wa.adapter.send(Answer(channel_id=f"whatsapp:{wa.user}", text="hello?"))
    assert "132001" in caplog.text
    assert "no_such_template" in caplog.text
    assert not graph.sent


async def test_stop_frees_the_port_and_restart_works(start_adapter: Start) -> None:
    wa = await start_adapter()
    port = wa.adapter.port
    await wa.adapter.stop()
    await wa.adapter.start(wa.inbound)
    assert wa.adapter.port != 0
    answer = await wa.http.get(
        wa.url, params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"}
    )
    assert answer.status_code == 403
    assert port


async def test_the_post_is_answered_only_after_submit_returned(start_adapter: Start) -> None:
    ctx = HeldContext()
    ctx.release.clear()
    wa = await start_adapter(ctx)
    payload = text_payload(wa.number, wa.user, "keep me", message_id="wamid.KEEP")
    posting = asyncio.create_task(wa.post(payload))
    await asyncio.wait_for(ctx.called.wait(), 10)
    await asyncio.sleep(0.2)
    assert not posting.done()  # submit has not returned: no answer yet
    ctx.release.set()
    answer = await asyncio.wait_for(posting, 10)
    assert (answer.status_code, answer.text) == (200, "EVENT_RECEIVED")
    event = await wa.event()
    assert (event.text, event.delivery_id) == ("keep me", "wamid.KEEP")


async def test_a_failed_submit_is_answered_503_and_the_redelivery_is_handled(
    start_adapter: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openpista_whatsapp")
    ctx = HeldContext()
    ctx.failures.append(ConnectionError("database unreachable"))
    wa = await start_adapter(ctx)
    first = message(wa.user, "text", {"body": "one"}, message_id="wamid.ONE")
    second = message(wa.user, "text", {"body": "two"}, message_id="wamid.TWO")
    payload = webhook_payload(wa.number, [first, second])
    assert (await wa.post(payload)).status_code == 503
    assert [e.text for e in [await wa.event()]] == ["two"]  # the other message went on
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "wamid.ONE not stored" in lines[0].getMessage()
    assert "database unreachable" in lines[0].getMessage()
    assert lines[0].exc_info is None
    answer = await wa.post(payload)  # Meta delivers the POST again
    assert (answer.status_code, answer.text) == (200, "EVENT_RECEIVED")
    event = await wa.event()
    assert (event.text, event.delivery_id) == ("one", "wamid.ONE")
    assert wa.inbound.empty()  # "two" was not submitted twice
    assert [e.delivery_id for e in ctx.calls] == ["wamid.ONE", "wamid.TWO", "wamid.ONE"]
    assert (await wa.post(text_payload(wa.number, wa.user, "more"))).status_code == 200


async def test_a_slow_message_is_answered_503_and_its_redelivery_waits_for_it(
    start_adapter: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openpista_whatsapp")
    ctx = HeldContext()
    ctx.release.clear()
    wa = await start_adapter(ctx, webhook_answer_timeout=0.3)
    payload = text_payload(wa.number, wa.user, "slow", message_id="wamid.SLOW")
    assert (await wa.post(payload)).status_code == 503
    assert "not handled within 0.3 s" in caplog.text
    retry = asyncio.create_task(wa.post(payload))  # joins the handling under way
    await asyncio.sleep(0.1)
    ctx.release.set()
    assert (await retry).status_code == 200
    assert (await wa.event()).delivery_id == "wamid.SLOW"
    assert len(ctx.calls) == 1  # handled once
    assert (await wa.post(payload)).status_code == 200  # a late copy: a duplicate
    await wa.settle()
    assert wa.inbound.empty()
