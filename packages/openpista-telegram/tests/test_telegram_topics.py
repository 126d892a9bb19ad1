"""Forum topics: each topic is its own conversation and every answer stays in its topic."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from openpista.config import PolicySettings
from openpista.models import Answer, Attachment
from openpista_telegram.adapter import TelegramAdapter
from openpista_telegram.testing import TelegramEmulator, User
from openpista_testing.emulator import LlmEmulator

Serve = Callable[..., Awaitable[TelegramAdapter]]
FORUM = -1009876


async def test_answers_typing_files_and_prompts_stay_in_the_topic(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo in-topic"})])
    llm_emulator.reply(lambda body: "tool said: " + body["messages"][-1]["content"])
    adapter = await serve(policy=PolicySettings(remote="ask", approval_timeout=30))
    mention = "@openpista_test_bot run it"
    telegram.send_text(FORUM, mention, user=alice, chat_type="supergroup", topic=7)
    [prompt] = await telegram.wait_for_sent(1, chat_id=FORUM)
    assert prompt.topic == 7
    assert prompt.reply_markup is not None
    approve = prompt.reply_markup["inline_keyboard"][0][0]["callback_data"]
    telegram.press_button(FORUM, prompt.message_id, approve, user=alice)
    sent = await telegram.wait_for_sent(3, chat_id=FORUM)
    assert [m.topic for m in sent] == [7, 7, 7]
    assert any("in-topic" in m.text and m.text.startswith("tool said:") for m in sent)
    assert (FORUM, 7) in telegram.action_topics  # "typing" in the topic
    assert (FORUM, None) not in telegram.action_topics
    picture = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 10).decode()
    await adapter.send(
        Answer(
            channel_id=f"telegram:{FORUM}:7",
            text="a file",
            attachments=[Attachment(name="x.txt", mime_type="text/plain", data=picture)],
        )
    )
    assert [(m.method, m.topic) for m in telegram.sent[-2:]] == [
        ("sendMessage", 7),
        ("sendDocument", 7),
    ]


async def test_each_topic_is_its_own_conversation(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.default_reply = lambda body: f"seen {len(body['messages'])} messages"
    await serve()
    telegram.send_text(FORUM, "@openpista_test_bot one", user=alice, chat_type="supergroup")
    await telegram.wait_for_sent(1, chat_id=FORUM)
    telegram.send_text(
        FORUM, "@openpista_test_bot two", user=alice, chat_type="supergroup", topic=3
    )
    sent = await telegram.wait_for_sent(2, chat_id=FORUM)
    assert [m.topic for m in sent] == [None, 3]  # General, then the topic
    assert sent[0].text == sent[1].text  # the topic did not see the General chat's history
