"""Unit tests: config, channel ids, message bodies, pacing, remembered state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista.config import ConfigError
from openpista.models import ApprovalRequest
from openpista_whatsapp import messages
from openpista_whatsapp.adapter import WhatsAppAdapter
from openpista_whatsapp.graph import GraphError
from openpista_whatsapp.pacing import Pacer
from openpista_whatsapp.settings import load_whatsapp_config
from openpista_whatsapp.state import WINDOW_SECONDS, ConversationWindows, StatusLog, TtlSet

BASE = {"access_token": "tok", "verify_token": "ver", "app_secret": "sec", "phone_number_id": 111}


def test_config_minimal_and_defaults() -> None:
    config = load_whatsapp_config(BASE)
    assert [n.phone_number_id for n in config.numbers] == ["111"]
    assert config.graph_api_version == "v21.0"
    assert config.webhook_host == "127.0.0.1"  # plain HTTP: only a local proxy reaches it
    assert not config.open_to_all


def test_config_names_every_missing_option() -> None:
    with pytest.raises(ConfigError) as failure:
        load_whatsapp_config({})
    message = str(failure.value)
    for needed in (
        "channels.whatsapp.access_token (or $WHATSAPP_ACCESS_TOKEN)",
        "channels.whatsapp.verify_token (or $WHATSAPP_VERIFY_TOKEN)",
        "channels.whatsapp.app_secret (or $WHATSAPP_APP_SECRET)",
        "phone_number_id or phone_numbers (or $WHATSAPP_PHONE_NUMBER_ID)",
    ):
        assert needed in message


def test_config_rejects_unknown_and_invalid_options() -> None:
    with pytest.raises(ConfigError, match=r"^\[channels\.whatsapp\] tokn: unknown option"):
        load_whatsapp_config({**BASE, "tokn": "x"})
    with pytest.raises(ConfigError, match=r"^\[channels\.whatsapp\] webhook_port: "):
        load_whatsapp_config({**BASE, "webhook_port": 70000})
    with pytest.raises(ConfigError, match=r"\] webhook_path: .*start with '/'"):
        load_whatsapp_config({**BASE, "webhook_path": "hook"})


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", "from-env")
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "secret-env")
    monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", "verify-env")
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "999")
    config = load_whatsapp_config({"access_token": "from-file"})
    assert config.secret("access_token") == "from-env"
    assert config.secret("app_secret") == "secret-env"
    assert config.secret("verify_token") == "verify-env"
    assert [n.phone_number_id for n in config.numbers] == ["999"]
    assert "from-env" not in repr(config)


def test_several_numbers_and_number_cleanup() -> None:
    config = load_whatsapp_config(
        {
            **BASE,
            "phone_numbers": [
                {"phone_number_id": "222", "messages_per_second": 5},
                {"phone_number_id": "111"},
            ],
            "allowed_numbers": ["+49 (151) 555-0001"],
        }
    )
    assert [n.phone_number_id for n in config.numbers] == ["111", "222"]
    assert config.allowed_numbers == ["+491515550001"]


def test_channel_ids_with_one_and_several_numbers(tmp_path: Path) -> None:
    single = WhatsAppAdapter(load_whatsapp_config(BASE), state_dir=tmp_path)
    assert single.channel_id("111", "4915") == "whatsapp:4915"
    assert single.route("whatsapp:4915") == ("111", "4915")
    several = WhatsAppAdapter(
        load_whatsapp_config({**BASE, "phone_numbers": [{"phone_number_id": "222"}]}),
        state_dir=tmp_path,
    )
    assert several.channel_id("222", "4915") == "whatsapp:222:4915"
    assert several.route("whatsapp:222:4915") == ("222", "4915")
    assert several.route("whatsapp:4915") == ("111", "4915")  # the first number
    for bad in ("telegram:1", "whatsapp:333:4915", "whatsapp:abc", "whatsapp:1:2:3", "whatsapp:"):
        with pytest.raises(ValueError, match=r"(?i)whatsapp"):
            several.route(bad)


def test_text_message_shape() -> None:
    assert messages.text_message("49", "hi") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "49",
        "type": "text",
        "text": {"body": "hi", "preview_url": False},
    }
    with pytest.raises(ValueError, match="1 to 4096"):
        messages.text_message("49", "x" * 4097)


def test_buttons_are_limited() -> None:
    body = messages.buttons_message("49", "pick", [("a", "A much too long button title")])
    reply = body["interactive"]["action"]["buttons"][0]["reply"]
    assert reply == {"id": "a", "title": "A much too long but…"}
    assert len(reply["title"]) == 20
    with pytest.raises(ValueError, match="1 to 3"):
        messages.buttons_message("49", "pick", [("a", "A")] * 4)


def test_list_message_shape_and_limits() -> None:
    body = messages.list_message(
        "49", "Choose", "Options", [("Main", [("r1", "One", "first"), ("r2", "Two", "")])]
    )
    action = body["interactive"]["action"]
    assert body["interactive"]["type"] == "list"
    assert action["button"] == "Options"
    assert action["sections"][0]["rows"] == [
        {"id": "r1", "title": "One", "description": "first"},
        {"id": "r2", "title": "Two"},
    ]
    with pytest.raises(ValueError, match="1 to 10 rows"):
        messages.list_message("49", "x", "y", [("s", [("i", "t", "")] * 11)])


def test_approval_message_has_approve_and_deny_buttons() -> None:
    request = ApprovalRequest(id="ab12cd", tool="system.run", arguments={"command": "ls"})
    body = messages.approval_message("49", request)
    buttons = body["interactive"]["action"]["buttons"]
    assert [b["reply"]["id"] for b in buttons] == ["approve:ab12cd", "deny:ab12cd"]
    assert "system.run" in body["interactive"]["body"]["text"]
    huge = ApprovalRequest(id="x", tool="system.run", arguments={"command": "y" * 5000})
    assert len(messages.approval_message("49", huge)["interactive"]["body"]["text"]) == 1024


def test_template_and_media_bodies() -> None:
    template = messages.template_message("49", "reengage", "de", ["hello"])
    assert template["template"] == {
        "name": "reengage",
        "language": {"code": "de"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "hello"}]}],
    }
    image = messages.media_message("49", "image", media_id="M", caption="c")
    assert image["image"] == {"id": "M", "caption": "c"}
    doc = messages.media_message("49", "document", link="http://x/y.pdf", filename="y.pdf")
    assert doc["document"] == {"link": "http://x/y.pdf", "filename": "y.pdf"}
    with pytest.raises(ValueError, match="exactly one"):
        messages.media_message("49", "image")
    assert [
        messages.media_kind(m) for m in ("image/png", "audio/ogg", "video/mp4", "text/csv")
    ] == [
        "image",
        "audio",
        "video",
        "document",
    ]


def test_pacer_spaces_numbers_and_recipients() -> None:
    now = [100.0]
    pacer = Pacer(lambda number: 10.0 if number == "n1" else 1.0, 2.0, clock=lambda: now[0])
    assert pacer.reserve("n1", "a") == 0
    assert pacer.reserve("n1", "b") == pytest.approx(0.1)  # 10 per second on n1
    assert pacer.reserve("n1", "a") == pytest.approx(2.0)  # 2 s gap to the same recipient
    assert pacer.reserve("n2", "a") == 0  # other numbers are independent
    assert pacer.reserve("n2", "c") == pytest.approx(1.0)
    now[0] += 10
    assert pacer.reserve("n1", "a") == 0


def test_ttl_set_expires_and_is_bounded() -> None:
    now = [0.0]
    seen = TtlSet(size=3, ttl=10, clock=lambda: now[0])
    assert seen.add("a")
    assert not seen.add("a")
    now[0] = 11
    assert seen.add("a")
    for key in "bcde":
        seen.add(key)
    assert len(seen) == 3
    assert seen.add("b")  # pushed out by newer keys


def test_windows_are_kept_on_disk(tmp_path: Path) -> None:
    now = [1_000_000.0]
    path = tmp_path / "windows.json"
    windows = ConversationWindows(path, clock=lambda: now[0])
    assert not windows.is_open("111", "49")
    windows.user_wrote("111", "49")
    windows.user_wrote("111", "50", at=now[0] - WINDOW_SECONDS - 1)  # an old message
    assert windows.is_open("111", "49")
    assert not windows.is_open("111", "50")
    assert not windows.is_open("222", "49")
    again = ConversationWindows(path, clock=lambda: now[0])
    assert again.is_open("111", "49")
    now[0] += WINDOW_SECONDS
    assert not again.is_open("111", "49")
    path.write_text("{not json")
    assert not ConversationWindows(path).is_open("111", "49")


def test_status_log_appends_and_rotates(tmp_path: Path) -> None:
    log = StatusLog(tmp_path / "statuses.jsonl", max_bytes=200)
    for i in range(10):
        log.append({"message_id": f"wamid.{i}", "status": "sent"})
    rotated = tmp_path / "statuses.jsonl.1"
    assert rotated.exists()
    records = log.read() + [json.loads(line) for line in rotated.read_text().splitlines()]
    assert len(records) <= 10
    assert log.read()[-1]["message_id"] == "wamid.9"


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (429, {"error": {"message": "slow", "code": 130429}}, 130429, True),
        (400, {"error": {"message": "rate", "code": 80007}}, 80007, True),
        (500, {"error": {"message": "oops", "code": 1}}, 1, True),
        (503, "not json", 0, True),
        (400, {"error": {"message": "Template missing", "code": 132001}}, 132001, False),
        (400, {"error": {"message": "bad number", "code": 131030}}, 131030, False),
        (401, {"error": {"message": "token", "code": 190}}, 190, False),
        (400, {"error": "strange"}, 0, False),
    ],
)
def test_graph_errors_are_classified(status: int, body: Any, code: int, retryable: bool) -> None:
    content = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
    error = GraphError.from_response(httpx.Response(status, content=content))
    assert (error.code, error.retryable, error.status) == (code, retryable, status)
    assert f"HTTP {status}" in str(error)
