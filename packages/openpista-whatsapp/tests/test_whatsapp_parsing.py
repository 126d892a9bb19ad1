"""Unit tests: signatures, webhook parsing of every message type, statuses, oddities."""

from __future__ import annotations

from typing import Any

import pytest

from openpista_whatsapp.payload import parse_webhook
from openpista_whatsapp.signature import HEADER, sign, verify
from openpista_whatsapp.testing import (
    message,
    signed_post,
    system_error,
    webhook_payload,
)

NUMBER = "111111"
USER = "4915550001"


def one(kind: str, content: Any, **extra: Any) -> Any:
    entry = message(USER, kind, content, message_id="wamid.X1")
    entry.update(extra)
    delivery = parse_webhook(webhook_payload(NUMBER, [entry]))
    assert not delivery.ignored, delivery.ignored
    (parsed,) = delivery.messages
    assert (parsed.phone_number_id, parsed.sender, parsed.message_id) == (NUMBER, USER, "wamid.X1")
    assert parsed.kind == kind
    assert parsed.name == "Test User"
    return parsed


def test_signature_round_trip() -> None:
    body, headers = signed_post({"a": 1}, "secret")
    assert verify(body, headers[HEADER], "secret")
    assert headers[HEADER] == sign(body, "secret")


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=abc", "sha256=" + "0" * 64, "garbage", "sha256=zz\u00e9"],
)
def test_bad_or_missing_signatures_fail(header: str | None) -> None:
    assert not verify(b'{"a": 1}', header, "secret")


def test_signature_of_another_body_or_secret_fails() -> None:
    header = sign(b"one", "secret")
    assert not verify(b"two", header, "secret")
    assert not verify(b"one", header, "other")
    assert not verify(b"one", header, "")


def test_text() -> None:
    parsed = one("text", {"body": "hello there"}, context={"from": NUMBER, "id": "wamid.P"})
    assert parsed.text == "hello there"
    assert parsed.context_id == "wamid.P"
    assert parsed.timestamp is not None


@pytest.mark.parametrize("kind", ["image", "video", "sticker"])
def test_visual_media(kind: str) -> None:
    parsed = one(kind, {"id": "M1", "mime_type": "image/webp", "sha256": "x"})
    assert parsed.media.id == "M1"
    assert parsed.media.mime_type == "image/webp"
    assert parsed.text == f"[{kind}]"
    captioned = one(kind, {"id": "M1", "mime_type": "image/jpeg", "caption": "look"})
    assert captioned.text == "look"


def test_audio_and_voice() -> None:
    assert one("audio", {"id": "A", "mime_type": "audio/ogg"}).text == "[audio]"
    voice = one("audio", {"id": "A", "mime_type": "audio/ogg; codecs=opus", "voice": True})
    assert voice.text == "[voice message]"


def test_document() -> None:
    parsed = one("document", {"id": "D", "mime_type": "application/pdf", "filename": "a.pdf"})
    assert parsed.media.filename == "a.pdf"
    assert parsed.text == "[document a.pdf]"


def test_location() -> None:
    parsed = one(
        "location", {"latitude": 52.52, "longitude": 13.405, "name": "Mitte", "address": "Berlin"}
    )
    assert parsed.text == "📍 Location: Mitte, Berlin (52.52, 13.405)"
    assert one("location", {"latitude": 1, "longitude": 2}).text == "📍 Location: 1.0, 2.0"


def test_contacts() -> None:
    cards = [
        {
            "name": {"formatted_name": "Ada Lovelace", "first_name": "Ada"},
            "phones": [{"phone": "+44 20 1234", "wa_id": "44201234", "type": "CELL"}],
            "emails": [{"email": "ada@example.org"}],
        },
        {"name": {"first_name": "Bob"}},
    ]
    parsed = one("contacts", cards)
    assert parsed.text == "👤 Contact: Ada Lovelace (+44 20 1234, ada@example.org); Bob"


def test_button_and_list_replies() -> None:
    button = one(
        "interactive", {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}}
    )
    assert (button.text, button.reply_id) == ("Yes", "b1")
    row = {"id": "r2", "title": "Second", "description": "the second row"}
    listed = one("interactive", {"type": "list_reply", "list_reply": row})
    assert (listed.text, listed.reply_id) == ("Second", "r2")


@pytest.mark.parametrize(
    ("button_id", "text"), [("approve:ab12cd", "/approve ab12cd"), ("deny:ab12cd", "/deny ab12cd")]
)
def test_approval_buttons_become_commands(button_id: str, text: str) -> None:
    reply = {"type": "button_reply", "button_reply": {"id": button_id, "title": "✅ Approve"}}
    assert one("interactive", reply).text == text


def test_template_quick_reply_button() -> None:
    parsed = one("button", {"text": "Call me", "payload": "CALL"})
    assert (parsed.text, parsed.reply_id) == ("Call me", "CALL")


def test_reactions() -> None:
    parsed = one("reaction", {"message_id": "wamid.OUT", "emoji": "👍"})
    assert parsed.text == "reacted 👍 to wamid.OUT"
    assert parsed.context_id == "wamid.OUT"
    assert one("reaction", {"message_id": "wamid.OUT"}).text == "removed a reaction from wamid.OUT"


def test_statuses() -> None:
    statuses = [
        {"id": "wamid.A", "status": status, "timestamp": "1700000000", "recipient_id": USER}
        for status in ("sent", "delivered", "read")
    ]
    statuses.append(
        {
            "id": "wamid.B",
            "status": "failed",
            "timestamp": "1700000001",
            "recipient_id": USER,
            "errors": [{"code": 131047, "title": "Re-engagement message"}],
        }
    )
    delivery = parse_webhook(webhook_payload(NUMBER, statuses=statuses))
    assert [(s.message_id, s.status) for s in delivery.statuses] == [
        ("wamid.A", "sent"),
        ("wamid.A", "delivered"),
        ("wamid.A", "read"),
        ("wamid.B", "failed"),
    ]
    assert delivery.statuses[-1].errors[0]["code"] == 131047
    assert delivery.statuses[0].timestamp == 1700000000.0
    assert not delivery.messages


def test_unknown_and_unsupported_types_are_ignored_with_a_reason() -> None:
    unsupported = message(USER, "unsupported", {}, message_id="wamid.U")
    unsupported["errors"] = [{"code": 131051, "title": "Message type unknown"}]
    order = message(USER, "order", {"catalog_id": "1"}, message_id="wamid.O")
    nfm = message(USER, "interactive", {"type": "nfm_reply", "nfm_reply": {}})
    delivery = parse_webhook(webhook_payload(NUMBER, [unsupported, order, nfm]))
    assert not delivery.messages
    assert len(delivery.ignored) == 3
    assert "Message type unknown" in delivery.ignored[0]
    assert "'order'" in delivery.ignored[1]
    assert "nfm_reply" in delivery.ignored[2]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {},
        {"object": "page"},
        {"object": "whatsapp_business_account", "entry": "x"},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]},
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {}}]}],
        },
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "account_update", "value": {}}]}],
        },
    ],
)
def test_odd_bodies_never_raise(body: Any) -> None:
    delivery = parse_webhook(body)
    assert not delivery.messages
    assert not delivery.statuses


def test_malformed_messages_are_skipped_and_the_rest_kept() -> None:
    broken = [
        {"id": "x", "type": "text", "text": {"body": "no sender"}},
        message(USER, "text", {}),
        message(USER, "image", "not an object"),
        message(USER, "location", {"latitude": "north"}),
        message(USER, "contacts", []),
        message(USER, "interactive", None),
    ]
    good = message(USER, "text", {"body": "still here"})
    delivery = parse_webhook(webhook_payload(NUMBER, [*broken, good]))
    assert [m.text for m in delivery.messages] == ["still here"]
    assert len(delivery.ignored) == len(broken)
    assert all("malformed" in reason for reason in delivery.ignored)


def test_system_level_errors_are_read() -> None:
    rate = system_error(
        131056,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages\nsent to the same number.",
    )
    odd: dict[str, Any] = {"code": "x" * 50, "message": "y" * 400, "error_data": "not a dict"}
    delivery = parse_webhook(webhook_payload(NUMBER, errors=[rate, odd, "junk"]))  # type: ignore[list-item]
    assert not delivery.ignored
    first, second = delivery.errors
    assert (first.phone_number_id, first.code) == (NUMBER, 131056)
    assert first.title == "(Business Account, Consumer Account) pair rate limit hit"
    assert first.details.endswith("messages sent to the same number.")  # one line
    assert (second.code, second.details) == (None, "")
    assert len(second.title) == 200
    no_number = webhook_payload(NUMBER, errors=[rate])
    del no_number["entry"][0]["changes"][0]["value"]["metadata"]
    (orphan,) = parse_webhook(no_number).errors
    assert (orphan.phone_number_id, orphan.code) == ("", 131056)
