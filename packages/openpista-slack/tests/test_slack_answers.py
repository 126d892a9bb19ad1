"""Answers as Slack shows them: streamed by chat.update, cut at Slack's size, the
/openpista command and approval buttons only the asking user may press."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from openpista.access import PAIRED, REFUSAL, PairingBook
from openpista.buttons import ANSWERED
from openpista.config import PolicySettings
from openpista.models import Answer, Attachment, TextChunk, ToolCall, ToolProgress
from openpista_slack.adapter import APPROVE, DENY, NOT_YOURS, SlackAdapter
from openpista_slack.settings import parse_settings
from openpista_slack.stream import CURSOR
from openpista_slack.testing import TEAM, Posted, SlackEmulator, User
from openpista_slack.text import MESSAGE_LIMIT
from openpista_testing.adapters import QueueContext
from openpista_testing.emulator import LlmEmulator

Serve = Callable[..., Awaitable[SlackAdapter]]
Table = Callable[..., dict[str, Any]]
GENERAL = "C0GENERAL"


async def test_answers_stream_into_the_thinking_message(
    slack: SlackEmulator, table: Table, alice: User
) -> None:
    adapter = SlackAdapter(parse_settings(table(stream_interval=0.3)))
    ctx = QueueContext()
    await adapter.start(ctx)
    try:
        slack.dm(alice, "tell me")
        event = await asyncio.wait_for(ctx.events.get(), 20)
        [thinking] = await slack.wait_for_messages(1)
        route = {"channel_id": event.channel_id, "request_id": event.metadata["request_id"]}
        await adapter.send(TextChunk(text="Hello **wor", **route))
        await slack.wait_until(lambda: thinking.text == "Hello **wor" + CURSOR)
        for _ in range(50):  # a burst: shown with one chat.update, not fifty
            await adapter.send(TextChunk(text="ld", **route))
        await slack.wait_until(lambda: thinking.text.endswith("ld" + CURSOR))
        assert len(thinking.edits) == 2
        call = ToolCall(id="c1", name="system.run")
        await adapter.send(ToolProgress(call=call, **route))
        await slack.wait_until(lambda: thinking.text.endswith("\n_🔧 system.run…_"))
        await adapter.send(Answer(text="Hello **world**", **route))
        await slack.wait_until(lambda: thinking.text == "Hello *world*")
        assert len(slack.messages) == 1
        assert len(thinking.edits) == 4
        await asyncio.sleep(0)  # no preview comes after the answer
        assert thinking.text == "Hello *world*"
    finally:
        await adapter.stop()


async def test_long_answers_are_split_at_slacks_size(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    # Escaped for Slack, "<" becomes "&lt;": the rendered text is what must fit.
    long = "\n\n".join(f"paragraph {i} " + "a<b & c " * 40 for i in range(60))
    llm_emulator.reply_text(long, chunk_size=500)
    await serve()
    slack.dm(alice, "write a lot")
    posted = await slack.wait_for_messages(2, channel=alice.dm)
    await slack.wait_until(lambda: "paragraph 59" in slack.messages[-1].text)
    posted = list(slack.messages)
    assert all(len(m.text) <= MESSAGE_LIMIT for m in posted)
    assert posted[0].text.startswith("paragraph 0")  # the placeholder became part one
    joined = " ".join(m.text for m in posted)
    assert all(f"paragraph {i} " in joined for i in range(60))
    assert joined.count("a&lt;b &amp; c") == 60 * 40  # no escape cut in two


async def test_the_slash_command(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User, mallory: User
) -> None:
    llm_emulator.reply_text("asked by command")
    await serve()
    slack.slash_command(alice, GENERAL, "help")
    await slack.wait_until(lambda: slack.responses)
    assert "/model" in slack.responses[0]["text"]
    slack.slash_command(alice, GENERAL, "ask what time is it?")
    await slack.wait_until(lambda: [m for m in slack.messages if m.text == "asked by command"])
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "what time is it?"
    slack.slash_command(alice, GENERAL, "session")
    await slack.wait_until(lambda: len(slack.responses) == 2)
    slack.slash_command(mallory, GENERAL, "ask me too")
    await slack.wait_until(lambda: len(slack.responses) == 3)
    assert slack.responses[2]["text"] == REFUSAL
    code = PairingBook("slack").new_code()
    slack.slash_command(mallory, GENERAL, f"pair {code}")
    await slack.wait_until(lambda: len(slack.responses) == 4)
    assert slack.responses[3]["text"] == PAIRED
    assert len(llm_emulator.requests) == 1
    await slack.wait_until(lambda: len(slack.acks) >= 5)  # every slash command was acked


async def ask(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, user: User
) -> tuple[Posted, str]:
    """Have the agent ask to run a command; returns the prompt and its request id."""
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo approved-run"})])
    llm_emulator.reply(lambda body: "tool said: " + body["messages"][-1]["content"])
    await serve(policy=PolicySettings(remote="ask", approval_timeout=30))
    slack.dm(user, "run it")
    prompt = await slack.wait_until(lambda: next((m for m in slack.messages if m.buttons), None))
    [approve, deny] = prompt.buttons
    assert (approve["action_id"], deny["action_id"]) == (APPROVE, DENY)
    assert approve["value"] == deny["value"]
    return prompt, str(approve["value"])


async def test_only_the_asker_may_press_the_buttons(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User, bob: User
) -> None:
    prompt, request_id = await ask(serve, slack, llm_emulator, alice)
    assert "system.run" in prompt.text
    assert request_id in prompt.text
    slack.press(bob, prompt, APPROVE)  # allowed to talk to the agent, but not his request
    await slack.wait_until(lambda: slack.responses)
    assert slack.responses[0]["text"] == NOT_YOURS.format(user=alice.id)
    assert slack.responses[0]["response_type"] == "ephemeral"
    assert prompt.buttons  # still waiting
    slack.press(alice, prompt, APPROVE)
    await slack.wait_until(lambda: not prompt.buttons)
    assert f"✅ Approved by <@{alice.id}>" in str(prompt.blocks)
    await slack.wait_until(
        lambda: [m for m in slack.messages if "tool said:" in m.text and "approved-run" in m.text]
    )
    slack.press(alice, prompt, DENY)  # too late: already answered
    await slack.wait_until(lambda: len(slack.responses) == 2)
    assert slack.responses[1]["text"] == ANSWERED


async def test_a_press_before_the_prompts_post_is_answered_waits_for_it(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    # The prompt shows in the chat before chat.postMessage answers the bot with its ts: a
    # quick press then must not be told "already answered" (the buttons would stay).
    slack.slow_next("chat.postMessage", 1.0, lambda params: "blocks" in params)
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo approved-run"})])
    llm_emulator.reply(lambda body: "tool said: " + body["messages"][-1]["content"])
    await serve(policy=PolicySettings(remote="ask", approval_timeout=30))
    slack.dm(alice, "run it")
    prompt = await slack.wait_until(lambda: next((m for m in slack.messages if m.buttons), None))
    slack.press(alice, prompt, APPROVE)
    await slack.wait_until(lambda: not prompt.buttons)
    assert f"✅ Approved by <@{alice.id}>" in str(prompt.blocks)
    assert not slack.responses  # no ephemeral "already answered"


async def test_deny_stops_the_tool(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    prompt, _ = await ask(serve, slack, llm_emulator, alice)
    slack.press(alice, prompt, DENY)
    await slack.wait_until(lambda: not prompt.buttons)
    assert "Denied" in str(prompt.blocks)
    final = await slack.wait_until(
        lambda: next((m for m in slack.messages if m.text.endswith("did not run")), None)
    )
    assert "denied" in final.text
    assert len(prompt.edits) == 1


async def test_files_go_out_through_the_upload_flow(
    slack: SlackEmulator, table: Table, alice: User
) -> None:
    adapter = SlackAdapter(parse_settings(table()))
    await adapter.start(QueueContext())
    try:
        picture = Attachment(name="chart.png", mime_type="image/png", data="iVBORw0KGgo=")
        channel_id = f"slack:{TEAM}:{alice.dm}:1700000000.000100"
        await adapter.send(Answer(channel_id=channel_id, text="here", attachments=[picture]))
        [upload] = await slack.wait_until(lambda: slack.uploads)
        assert (upload.name, upload.data) == ("chart.png", b"\x89PNG\r\n\x1a\n")
        assert (upload.channel, upload.thread_ts) == (alice.dm, "1700000000.000100")
        assert slack.calls[-2:] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
        broken = Attachment(name="broken.bin", data="not base64!")
        await adapter.send(Answer(channel_id=channel_id, text="again", attachments=[broken]))
        await slack.wait_until(lambda: any("broken.bin" in m.text for m in slack.messages))
        assert len(slack.uploads) == 1
    finally:
        await adapter.stop()
