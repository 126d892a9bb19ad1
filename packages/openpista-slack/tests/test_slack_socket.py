"""The Slack channel in Socket Mode end to end in one process: real slack-bolt / slack_sdk
against the Slack emulator, the real gateway, litellm against the LLM emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from openpista_slack.adapter import SlackAdapter
from openpista_slack.testing import SlackEmulator, User
from openpista_testing.emulator import LlmEmulator

Serve = Callable[..., Awaitable[SlackAdapter]]


async def test_dm_round_trip(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("hello **Alice**")
    await serve()
    slack.dm(alice, "hi there")
    [reply] = await slack.wait_for_messages(1, channel=alice.dm)
    await slack.wait_until(lambda: reply.text == "hello *Alice*")
    assert reply.edits  # the "thinking" placeholder was replaced by the answer
    assert slack.messages[0].params["text"].startswith("⏳")
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "hi there"
    assert slack.acks  # every envelope is acked
    assert "apps.connections.open" in slack.calls
