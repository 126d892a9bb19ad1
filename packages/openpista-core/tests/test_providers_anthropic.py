"""The httpx path for Anthropic's Messages API: the request in Anthropic's own format, the
named server-sent events, and hostile answers (each one clear error).

Answers, tool calls, usage and every error class are checked on both Anthropic paths (httpx
and litellm) by test_providers.py and its contract suite; this file covers what only the
httpx path does itself."""

from __future__ import annotations

import json
from typing import Any

import pluggy
import pytest

import openpista.builtins.providers
import openpista.hookspecs
from openpista.config import AgentSettings, ProviderSettings, Settings
from openpista.models import Attachment, Message, ToolCall, ToolResult
from openpista.providers.anthropic_messages import (
    API_VERSION,
    DEFAULT_MAX_TOKENS,
    AnthropicMessagesProvider,
)
from openpista.providers.base import ChatResult, ProviderError, TextDelta, ToolCallDelta, ToolSpec
from openpista.providers.http_base import MAX_EVENT_BYTES
from openpista.providers.litellm_provider import LiteLLMProvider
from openpista.providers.registry import ProviderRegistry
from openpista_testing.emulator import LlmEmulator, RawReply

KEY = "sk-ant-test-secret-0123456789"
HI = [Message(role="user", content="hi")]
RUN = ToolSpec(
    name="system.run",
    description="Run a shell command.",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}},
)
PNG = "iVBORw0KGgo="


def registry() -> ProviderRegistry:
    pm = pluggy.PluginManager("openpista")
    pm.add_hookspecs(openpista.hookspecs)
    pm.register(openpista.builtins.providers)
    return ProviderRegistry.from_plugins(pm)


def build(emu: LlmEmulator, **options: Any) -> Any:
    fields = {"base_url": emu.anthropic_base_url, "api_key": KEY, "max_retries": 0, "timeout": 10}
    section = ProviderSettings.model_validate(fields | {"retry_base_delay": 0} | options)
    settings = Settings(agent=AgentSettings(provider="anthropic"), providers={"anthropic": section})
    return registry().build(settings)


def sse(*events: dict[str, Any] | str) -> tuple[bytes, ...]:
    """Named server-sent events as Anthropic sends them (a string is sent verbatim)."""
    out = []
    for event in events:
        if isinstance(event, str):
            out.append(event.encode())
        else:
            out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    return tuple(out)


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-3-5-haiku-latest",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1},
    },
}
STOP = {"type": "message_stop"}


def text_block(index: int, *pieces: str) -> list[dict[str, Any]]:
    start = {"type": "content_block_start", "index": index, "content_block": {"type": "text"}}
    deltas = [
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    return [start | {"content_block": {"type": "text", "text": ""}}, *deltas,
            {"type": "content_block_stop", "index": index}]  # fmt: skip


def end(output_tokens: int) -> list[dict[str, Any]]:
    delta = {"stop_reason": "end_turn", "stop_sequence": None}
    return [{"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}}]


async def stream_text(provider: Any) -> tuple[str, ChatResult]:
    events = [e async for e in provider.stream(HI, [RUN])]
    assert isinstance(events[-1], ChatResult)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


async def stream_error(provider: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await stream_text(provider)
    assert KEY not in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert "\n" not in str(caught.value)
    return caught.value


# -- what carries the requests ------------------------------------------------------------------


def test_auto_and_http_use_the_messages_api_and_litellm_stays_available() -> None:
    with LlmEmulator() as emu:
        assert isinstance(build(emu), AnthropicMessagesProvider)
        assert isinstance(build(emu, client="http"), AnthropicMessagesProvider)
        assert type(build(emu, client="litellm")) is LiteLLMProvider


# -- the request in Anthropic's format ----------------------------------------------------------


async def test_the_request_is_in_anthropic_format(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("seen")
    picture = Attachment(name="a.png", mime_type="image/png", data=PNG)
    shot = Attachment(name="s.png", mime_type="image/png", data=PNG)
    call = ToolCall(id="toolu_1", name="system.run", arguments={"command": "ls"})
    broken = ToolCall(id="toolu_2", name="system.run", raw_arguments="{oops")
    conversation = [
        Message(role="system", content="be brief"),
        Message(role="user", content="look", attachments=[picture]),
        Message(role="assistant", content="Running.", tool_calls=[call, broken]),
        Message(
            role="tool",
            tool_result=ToolResult(
                call_id="toolu_1", name="system.run", output="a.txt", attachments=[shot]
            ),
        ),
        Message(
            role="tool",
            tool_result=ToolResult(
                call_id="toolu_2", name="system.run", output="bad arguments", is_error=True
            ),
        ),
        Message(role="user", content="and now?"),
    ]
    result = await build(llm_emulator).complete(conversation, [RUN])
    assert result.text == "seen"
    request = llm_emulator.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == API_VERSION
    assert "authorization" not in request.headers
    body = request.json
    assert body["system"] == "be brief"
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "stream" not in body
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "look"}, image]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Running."},
                {"type": "tool_use", "id": "toolu_1", "name": "system_run",
                 "input": {"command": "ls"}},
                {"type": "tool_use", "id": "toolu_2", "name": "system_run", "input": {}},
            ],
        },
        {
            "role": "user",  # the tool results first, then what the user said next
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
                 "content": [{"type": "text", "text": "a.txt"}, image]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
                 "content": [{"type": "text", "text": "bad arguments"}]},
                {"type": "text", "text": "and now?"},
            ],
        },
    ]  # fmt: skip
    assert body["tools"] == [
        {"name": "system_run", "description": RUN.description, "input_schema": RUN.parameters}
    ]


async def test_bearer_mode_sends_no_api_key_header(llm_emulator: LlmEmulator) -> None:
    await build(llm_emulator, auth_header="bearer").complete(HI, [])
    headers = llm_emulator.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in headers
    assert headers["anthropic-version"] == API_VERSION


# -- the stream -------------------------------------------------------------------------------


async def test_pings_unknown_events_and_other_deltas_are_ignored(
    llm_emulator: LlmEmulator,
) -> None:
    thinking = {"type": "content_block_delta", "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"}}  # fmt: skip
    llm_emulator.reply(
        RawReply(
            sse(
                ": a comment\n\n",
                START,
                {"type": "ping"},
                {"type": "brand_new_event", "whatever": [1, 2]},
                thinking,
                *text_block(1, "Hel", "lo"),
                {"type": "content_block_delta", "index": 1, "delta": {"type": "new_delta"}},
                *end(7),
                STOP,
            )
        )
    )
    text, result = await stream_text(build(llm_emulator))
    assert text == result.text == "Hello"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (15, 7)
    assert llm_emulator.requests[-1].json["stream"] is True


async def test_tool_use_streamed_in_pieces(llm_emulator: LlmEmulator) -> None:
    tool = {"type": "tool_use", "id": "toolu_9", "name": "system_run", "input": {}}
    pieces = ['{"comm', 'and": ', '"ls"}']
    deltas = [
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": p}}
        for p in pieces
    ]  # fmt: skip
    llm_emulator.reply(
        RawReply(
            sse(
                START,
                *text_block(0, "Looking."),
                {"type": "content_block_start", "index": 1, "content_block": tool},
                *deltas,
                {"type": "content_block_stop", "index": 1},
                *end(3),
                STOP,
            )
        )
    )
    events = [e async for e in build(llm_emulator).stream(HI, [RUN])]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(index=0, id="toolu_9", name="system.run", arguments="")
    assert "".join(c.arguments for c in calls) == '{"command": "ls"}'
    result = events[-1]
    assert isinstance(result, ChatResult)
    [call] = result.tool_calls
    assert (call.id, call.name, call.arguments) == ("toolu_9", "system.run", {"command": "ls"})


# -- hostile answers ----------------------------------------------------------------------------


async def test_an_error_event_mid_stream(llm_emulator: LlmEmulator) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    llm_emulator.reply(RawReply(sse(START, *text_block(0, "par"), overloaded)))
    error = await stream_error(build(llm_emulator))
    assert (error.kind, error.status) == ("other", 529)
    assert str(error).startswith("anthropic is overloaded (HTTP 529)")
    assert "try again in a minute (Overloaded)" in str(error)


async def test_an_error_event_for_a_rate_limit_mid_stream(llm_emulator: LlmEmulator) -> None:
    limited = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    llm_emulator.reply(RawReply(sse(START, limited)))
    error = await stream_error(build(llm_emulator))
    assert (error.kind, error.status) == ("rate_limit", 429)


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_http_529_overloaded(llm_emulator: LlmEmulator, streaming: bool) -> None:
    llm_emulator.reply_error(529, "Overloaded")
    llm_emulator.reply_text("not reached")
    provider = build(llm_emulator, max_retries=2)
    asked = stream_text(provider) if streaming else provider.complete(HI, [])
    with pytest.raises(ProviderError) as caught:
        await asked
    assert (caught.value.kind, caught.value.status) == ("other", 529)
    assert str(caught.value) == (
        "anthropic is overloaded (HTTP 529): the service is busy for everyone, not only this "
        "key; try again in a minute (Overloaded)"
    )
    assert len(llm_emulator.requests) == 1, "only rate limits are retried"


async def test_429_waits_as_retry_after_asks_then_succeeds(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(429, "Number of request tokens has exceeded your rate limit",
                             retry_after=0)  # fmt: skip
    llm_emulator.reply_text("after the wait")
    # retry_base_delay 3600: only the server's retry-after (0 s) lets this finish.
    provider = build(llm_emulator, max_retries=1, retry_base_delay=3600)
    text, _ = await stream_text(provider)
    assert text == "after the wait"
    assert len(llm_emulator.requests) == 2


async def test_429_exhausted_names_the_server_message(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(429, "Number of request tokens has exceeded your rate limit")
    error = await stream_error(build(llm_emulator))
    assert error.kind == "rate_limit"
    assert "(Number of request tokens has exceeded your rate limit)" in str(error)


async def test_an_html_502_page(llm_emulator: LlmEmulator) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
    llm_emulator.reply_error(502, raw_body=page)
    error = await stream_error(build(llm_emulator, max_retries=3))
    assert (error.kind, error.status) == ("other", 502)
    assert str(error).startswith("anthropic failed (HTTP 502): <html>")
    assert len(llm_emulator.requests) == 1


@pytest.mark.parametrize(
    "chunks",
    [
        sse(START, *text_block(0, "half an ans")),
        sse(START, *text_block(0, "half"))[:3],
        sse(START, *text_block(0, "done"), *end(2)),
    ],
    ids=["no-message-stop", "cut-mid-block", "no-message-stop-after-delta"],
)
async def test_a_truncated_stream_is_an_error_not_a_short_answer(
    llm_emulator: LlmEmulator, chunks: tuple[bytes, ...]
) -> None:
    llm_emulator.reply(RawReply(chunks))
    error = await stream_error(build(llm_emulator))
    assert error.kind == "other"
    assert str(error) == (
        "anthropic's answer broke off before its end (no message_stop event): "
        "the connection was cut, try again"
    )


@pytest.mark.parametrize(
    "chunks",
    [
        (b"event: message_start\ndata: {not json}\n\n",),
        (b"data: [1, 2]\n\n",),
        (b"data: " + b"[" * 100_000 + b"\n\n",),
        (),
        (b"<html>captive portal</html>",),
    ],
    ids=["not-json", "not-an-object", "deeply-nested", "empty-body", "an-html-page"],
)
async def test_malformed_events_are_one_clear_error(
    llm_emulator: LlmEmulator, chunks: tuple[bytes, ...]
) -> None:
    llm_emulator.reply(RawReply(chunks))
    error = await stream_error(build(llm_emulator))
    assert error.kind == "other"
    assert str(error).startswith("anthropic sent a malformed stream (")
    assert "[providers.anthropic] base_url is the Anthropic API's root" in str(error)


async def test_hostile_fields_are_ignored_not_crashed_on(llm_emulator: LlmEmulator) -> None:
    hostile: list[dict[str, Any]] = [
        {"type": "message_start", "message": "not an object"},
        {"type": "content_block_start", "index": "x", "content_block": ["bad"]},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
        {"type": "message_delta", "usage": {"output_tokens": "many"}},
    ]
    llm_emulator.reply(RawReply(sse(*hostile, *text_block(0, "ok"), STOP)))
    text, result = await stream_text(build(llm_emulator))
    assert text == "ok"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (0, 0)


async def test_an_oversized_line_is_refused_not_buffered(llm_emulator: LlmEmulator) -> None:
    block = b"x" * (1024 * 1024)
    llm_emulator.reply(
        RawReply((b"data: ", *(block for _ in range(MAX_EVENT_BYTES // len(block) + 2))))
    )
    error = await stream_error(build(llm_emulator))
    assert f"a line is longer than {MAX_EVENT_BYTES} bytes" in str(error)


async def test_an_oversized_whole_body_is_refused(llm_emulator: LlmEmulator) -> None:
    block = b"x" * (1024 * 1024)
    chunks = (b'{"content": "', *(block for _ in range(MAX_EVENT_BYTES // len(block) + 2)))
    llm_emulator.reply(RawReply(chunks, media_type="application/json"))
    with pytest.raises(ProviderError) as caught:
        await build(llm_emulator).complete(HI, [])
    assert "with a JSON body that is not an Anthropic message" in str(caught.value)


async def test_a_json_body_that_is_not_a_message(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(RawReply((b'{"content": {"text": "x"}}',), media_type="application/json"))
    with pytest.raises(ProviderError) as caught:
        await build(llm_emulator).complete(HI, [])
    assert "answered the request with a JSON body that is not an Anthropic message" in str(
        caught.value
    )


async def test_a_wrong_key_is_rejected_with_the_fix() -> None:
    with LlmEmulator(api_key="the-right-key") as emu:
        error = await stream_error(build(emu))
    assert (error.kind, error.status) == ("auth", 401)
    assert str(error) == (
        "the API key for anthropic was rejected (HTTP 401): set ANTHROPIC_API_KEY or "
        "[providers.anthropic] api_key"
    )
