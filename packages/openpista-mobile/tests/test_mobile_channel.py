"""The mobile channel end to end in one process: real aioquic client and server on
loopback, the real gateway, litellm talking to the LLM emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from openpista.testing.emulator import LlmEmulator
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient

Connect = Callable[..., Awaitable[MobileClient]]


async def test_a_message_gets_a_streamed_answer_on_its_stream(
    connect: Connect, mobile: MobileAdapter, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("hello from the agent", chunk_size=3)
    client = await connect()
    responses = [r async for r in client.ask("hi")]
    deltas = [r.text for r in responses if r.delta]
    assert len(deltas) > 1
    assert "".join(deltas) == "hello from the agent"
    final = responses[-1]
    assert (final.delta, final.text, final.channel_id) == (False, "hello from the agent", "mobile:phone")
    assert final.session_id
