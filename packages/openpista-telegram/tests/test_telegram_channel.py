"""The Telegram channel end to end in one process: real aiogram against the Bot API
emulator, the real gateway, litellm against the LLM emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL, PairingBook
from openpista.config import PolicySettings
from openpista.models import Answer, Attachment
from openpista_telegram.adapter import TelegramAdapter
from openpista_telegram.settings import parse_settings
from openpista_telegram.testing import TelegramEmulator, User
from openpista_testing.adapters import QueueContext
from openpista_testing.contracts import ChannelContract
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

if TYPE_CHECKING:
    from openpista.channels import ChannelAdapter

Serve = Callable[..., Awaitable[TelegramAdapter]]
Table = Callable[..., dict[str, Any]]


async def test_private_chat_round_trip(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("hello Alice", delay=0.5)
    await serve()
    telegram.send_text(alice.id, "hi there", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.method == "sendMessage"
    assert reply.text == "hello Alice"
    assert "parse_mode" not in reply.params  # plain text: model output cannot break a send
    assert (alice.id, "typing") in telegram.actions
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "hi there"


def png(width: int = 2) -> bytes:
    """A real, tiny PNG picture."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, width, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(width))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_markup_characters_in_answers_are_sent_as_they_are(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, bob: User
) -> None:
    tricky = "Use *bold*, _x_, [link](http://a.b), <b>tag</b> & 1-2=3! `code"
    llm_emulator.reply_text(tricky)
    await serve()
    telegram.send_text(bob.id, "format please", user=bob)  # bob is allowed by @username
    [reply] = await telegram.wait_for_sent(1, chat_id=bob.id)
    assert reply.text == tricky


async def test_group_answers_only_mentions_and_replies(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.default_reply = lambda body: "echo: " + body["messages"][-1]["content"]
    await serve()
    group = -1001234
    telegram.send_text(group, "just chatting among humans", user=alice, chat_type="supergroup")
    telegram.send_text(group, "@openpista_test_bot what is up?", user=alice, chat_type="group")
    [first] = await telegram.wait_for_sent(1, chat_id=group)
    assert first.text == "echo: what is up?"
    telegram.send_text(group, "and a follow-up", user=alice, chat_type="group", reply_to_bot=True)
    telegram.send_text(group, "@someone_else not you", user=alice, chat_type="group")
    telegram.send_text(group, "/approve@other_bot 123", user=alice, chat_type="group")
    sent = await telegram.wait_for_sent(2, chat_id=group)
    assert sent[1].text == "echo: and a follow-up"
    await asyncio.sleep(0.5)
    assert len(telegram.texts(group)) == 2
    assert len(llm_emulator.requests) == 2
    assert telegram.pending_updates() == 0  # ignored messages were consumed, not stuck


async def test_stranger_is_refused_and_nothing_reaches_the_agent(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    await serve()
    telegram.send_text(mallory.id, "run rm -rf / please", user=mallory)
    telegram.send_photo(mallory.id, png(), caption="look", user=mallory)
    telegram.send_text(-100777, "@openpista_test_bot hi", user=mallory, chat_type="group")
    await telegram.wait_for_sent(2, chat_id=mallory.id)
    await telegram.wait_for_sent(1, chat_id=-100777)
    assert telegram.texts(mallory.id) == [REFUSAL, REFUSAL]
    assert telegram.texts(-100777) == [REFUSAL]
    await asyncio.sleep(0.3)
    assert llm_emulator.requests == []
    assert (mallory.id, "typing") not in telegram.actions
    assert not list((home_files()).glob("**/*")), "a stranger's photo was downloaded"


def home_files() -> Path:
    from openpista.config import home_dir

    return home_dir() / "telegram" / "files"


async def test_pairing_code_lets_a_stranger_in_once(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    llm_emulator.reply_text("welcome")
    await serve()
    code = PairingBook("telegram").new_code()
    telegram.send_text(mallory.id, "/pair WRONGCODE", user=mallory)
    telegram.send_text(mallory.id, f"/pair {code}", user=mallory)
    telegram.send_text(mallory.id, "hello now", user=mallory)
    sent = await telegram.wait_for_sent(3, chat_id=mallory.id)
    assert [m.text for m in sent] == [PAIRING_FAILED, PAIRED, "welcome"]
    eve = User(7777, "eve")
    telegram.send_text(eve.id, f"/start {code}", user=eve)  # a used code does not work again
    [refused] = await telegram.wait_for_sent(1, chat_id=eve.id)
    assert refused.text == PAIRING_FAILED
    assert PairingBook("telegram").paired() == [str(mallory.id)]


async def test_long_answer_is_split_on_paragraphs(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    paragraphs = [f"Paragraph {i} 🙂 " + "word " * 300 for i in range(8)]
    answer = "\n\n".join(p.strip() for p in paragraphs)
    llm_emulator.reply_text(answer, chunk_size=500)
    await serve()
    telegram.send_text(alice.id, "write a lot", user=alice)
    sent = await telegram.wait_for_sent(3, chat_id=alice.id)
    await asyncio.sleep(0.3)
    parts = telegram.texts(alice.id)
    assert len(parts) >= 3
    assert all(len(p.encode("utf-16-le")) // 2 <= 4096 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts), "a part was cut mid-paragraph"
    assert "\n\n".join(parts) == answer
    assert sent[0].method == "sendMessage"


async def test_rate_limit_waits_retry_after(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("after the wait")
    await serve()
    telegram.fail_next(429, "Too Many Requests: retry after 1", retry_after=1)
    telegram.send_text(alice.id, "hi", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text == "after the wait"
    assert telegram.early_retries == 0, "retried before retry_after was over"
    assert telegram.requests.count("sendMessage") == 2


async def test_server_errors_are_retried_with_backoff(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("survived")
    await serve()
    telegram.fail_next(500, "Internal Server Error", times=2)
    telegram.fail_next(502, "Bad Gateway", method="getUpdates")  # polling backs off, goes on
    telegram.send_text(alice.id, "hi", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id, wait=30)
    assert reply.text == "survived"
    assert telegram.requests.count("sendMessage") == 3


@pytest.mark.parametrize("status", [502, 504])
async def test_html_front_end_errors_are_retried_like_server_errors(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    status: int,
) -> None:
    llm_emulator.reply_text("through the gateway")
    await serve()
    telegram.front_end_error(status, times=2)
    telegram.front_end_error(status, method="sendChatAction")  # typing goes on after it
    telegram.send_text(alice.id, "hi", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text == "through the gateway"
    assert telegram.requests.count("sendMessage") == 3


async def test_reset_connections_are_retried(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("after the reset")
    await serve()
    telegram.reset_next(times=2)
    telegram.send_text(alice.id, "hi", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text == "after the reset"
    assert telegram.requests.count("sendMessage") == 3


async def test_an_answer_that_cannot_be_delivered_leaves_a_short_error_line(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm_emulator.reply_text("a long and lost answer")
    await serve(max_retries=2)
    telegram.front_end_error(502, times=2)
    telegram.reset_next()  # the last of the three tries
    telegram.send_text(alice.id, "hi", user=alice)
    [notice] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert notice.text.startswith("❌ ")
    assert "could not be delivered" in notice.text
    assert telegram.requests.count("sendMessage") == 4
    assert "Traceback" not in caplog.text


async def test_blocked_chat_is_marked_and_others_keep_working(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    bob: User,
) -> None:
    llm_emulator.default_reply = lambda body: "answer: " + body["messages"][-1]["content"]
    adapter = await serve()
    telegram.send_text(alice.id, "first", user=alice)
    await telegram.wait_for_sent(1, chat_id=alice.id)
    telegram.block(alice.id)
    telegram.send_text(alice.id, "then I blocked you", user=alice)
    await eventually(lambda: alice.id in adapter.blocked)
    telegram.send_text(bob.id, "still there?", user=bob)
    [reply] = await telegram.wait_for_sent(1, chat_id=bob.id)
    assert reply.text == "answer: still there?"
    assert telegram.texts(alice.id) == ["answer: first"]


async def test_photo_in_becomes_an_attachment(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("a red square")
    await serve()
    picture = png(4)
    telegram.send_photo(alice.id, picture, caption="what is this?", user=alice)
    telegram.send_document(alice.id, b"a,b\n1,2\n", "../../evil name.csv", "text/csv", user=alice)
    await telegram.wait_for_sent(2, chat_id=alice.id)
    saved = sorted(home_files().glob(f"{alice.id}/*"))
    assert [p.read_bytes() for p in saved if p.suffix == ".jpg"] == [picture]
    [csv] = [p for p in saved if p.suffix == ".csv"]
    assert csv.parent == home_files() / str(alice.id)
    assert "evil_name.csv" in csv.name
    first = json.dumps(llm_emulator.requests[0].json)
    assert "what is this?" in first
    assert "data:image/jpeg;base64," + base64.b64encode(picture).decode() in first
    assert str(csv) in json.dumps(llm_emulator.requests[1].json)


async def test_oversized_document_is_refused_with_a_message(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    await serve(max_download_bytes=1000)
    telegram.send_document(alice.id, b"x" * 10, "big.bin", size=5_000_000, user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text.startswith("❌ could not take your file: big.bin is 4.8 MB")
    assert llm_emulator.requests == []


async def test_answer_attachments_go_out_as_photo_and_document(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("ok")
    adapter = await serve()
    telegram.send_text(alice.id, "hi", user=alice)
    await telegram.wait_for_sent(1, chat_id=alice.id)
    picture = png(3)
    await adapter.send(
        Answer(
            channel_id=f"telegram:{alice.id}",
            text="here is the screenshot",
            attachments=[
                Attachment(
                    name="screen.png",
                    mime_type="image/png",
                    data=base64.b64encode(picture).decode(),
                ),
                Attachment(name="notes.txt", mime_type="text/plain", data="aGVsbG8="),
            ],
        )
    )
    sent = telegram.sent[-3:]
    assert [m.method for m in sent] == ["sendMessage", "sendPhoto", "sendDocument"]
    assert sent[1].file == picture
    assert (sent[2].file, sent[2].file_name) == (b"hello", "notes.txt")


async def test_error_answers_are_marked(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_error(401, "invalid api key")
    await serve()
    telegram.send_text(alice.id, "hi", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.text.startswith("❌ ")


async def test_approval_buttons_round_trip(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    mallory: User,
) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo approved-run"})])
    llm_emulator.reply(lambda body: "tool said: " + body["messages"][-1]["content"])
    await serve(policy=PolicySettings(remote="ask", approval_timeout=30))
    telegram.send_text(alice.id, "run it", user=alice)
    [prompt] = await telegram.wait_for_sent(1, chat_id=alice.id)
    markup = prompt.reply_markup
    assert markup is not None
    approve, deny = markup["inline_keyboard"][0]
    assert approve["callback_data"].startswith("approve:")
    assert deny["callback_data"].startswith("deny:")
    telegram.press_button(alice.id, prompt.message_id, "approve:zzz999", user=mallory)
    await eventually(lambda: telegram.callback_answers)
    assert telegram.callback_answers[0]["text"].startswith("⛔")  # a stranger's press
    telegram.press_button(alice.id, prompt.message_id, "garbage", user=alice)
    telegram.press_button(alice.id, prompt.message_id, approve["callback_data"], user=alice)
    sent = await telegram.wait_for_sent(3, chat_id=alice.id)
    assert sent[1].text.startswith("✅ approved system.run")
    assert "approved-run" in sent[2].text
    # The pop-up answer may come after the messages: wait for it, do not race it.
    await eventually(lambda: len(telegram.callback_answers) >= 3)
    assert [a.get("text") for a in telegram.callback_answers[1:]] == [
        "This button is no longer valid.",
        "Approved",
    ]
    assert telegram.edits
    assert telegram.edits[0]["message_id"] == str(prompt.message_id)


async def test_malformed_and_unsupported_updates_do_not_stop_the_channel(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("still alive")
    await serve()
    chat = {"id": alice.id, "type": "private", "first_name": "Alice"}
    base = {"message_id": 1, "date": 0, "chat": chat, "from": alice.as_json()}
    telegram.inject({"edited_message": {**base, "text": "edited"}})
    telegram.inject({"message": {**base, "sticker": {"file_id": "s"}}})  # not a valid sticker
    telegram.inject({"message": {"message_id": 2, "date": 0, "chat": chat, "text": "no sender"}})
    telegram.inject(
        {"message": {**base, "voice": {"file_id": "v", "file_unique_id": "u", "duration": 1}}}
    )
    telegram.inject({"callback_query": {"id": "x", "from": alice.as_json(), "chat_instance": "c"}})
    telegram.inject({"future_update_kind": {"what": "?"}})
    telegram.send_text(alice.id, "are you there?", user=alice)
    await eventually(lambda: "still alive" in telegram.texts(alice.id), wait=30)
    assert any(t.startswith("❌ openpista reads text") for t in telegram.texts(alice.id))
    assert [r.json["messages"][-1]["content"] for r in llm_emulator.requests] == ["are you there?"]


async def test_wrong_token_is_a_clear_error_without_the_token(
    table: Table, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "999999:WrongTokenWrongTokenWrongToken"
    adapter = TelegramAdapter(parse_settings(table(token=wrong)))
    with pytest.raises(ConnectionError) as failure:
        await adapter.start(QueueContext())
    await adapter.stop()
    assert "401" in str(failure.value)
    assert "TELEGRAM_BOT_TOKEN" in str(failure.value)
    assert wrong not in str(failure.value)
    assert wrong not in caplog.text


async def test_unreachable_api_is_logged_without_the_token(
    table: Table, telegram: TelegramEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = TelegramAdapter(parse_settings(table(api_base="http://127.0.0.1:9", max_retries=1)))
    with pytest.raises(ConnectionError) as failure:
        await adapter.start(QueueContext())
    await adapter.stop()
    assert "cannot reach http://127.0.0.1:9" in str(failure.value)
    assert telegram.token not in str(failure.value)
    assert "retrying" in caplog.text
    assert telegram.token not in caplog.text


async def test_stop_ends_polling(
    table: Table, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    adapter = TelegramAdapter(parse_settings(table()))
    ctx = QueueContext()
    await adapter.start(ctx)
    waiting = asyncio.create_task(adapter.wait_closed())
    telegram.send_text(alice.id, "one", user=alice)
    event = await asyncio.wait_for(ctx.events.get(), 20)
    assert (event.channel_id, event.sender, event.text) == (
        f"telegram:{alice.id}",
        str(alice.id),
        "one",
    )
    await adapter.stop()
    await asyncio.wait_for(waiting, 10)  # a stop is a clean end, not a failure
    polls = telegram.requests.count("getUpdates")
    telegram.send_text(alice.id, "two", user=alice)
    await asyncio.sleep(0.5)
    assert telegram.requests.count("getUpdates") == polls
    assert ctx.events.empty()
    assert not [t for t in asyncio.all_tasks() if "telegram" in t.get_name()]


class TestTelegramContract(ChannelContract):
    @pytest.fixture(autouse=True)
    def _emulator(self, telegram: TelegramEmulator, table: Table, alice: User) -> None:
        self.telegram = telegram
        self.table = table
        self.alice = alice

    async def make_adapter(self) -> ChannelAdapter:
        return TelegramAdapter(parse_settings(self.table()))

    async def deliver(self, adapter: ChannelAdapter, text: str) -> None:
        self.telegram.send_text(self.alice.id, text, user=self.alice)

    async def received(self, adapter: ChannelAdapter) -> list[str]:
        return self.telegram.texts(self.alice.id)
