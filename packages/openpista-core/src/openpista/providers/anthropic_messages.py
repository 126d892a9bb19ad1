"""Anthropic's Messages API over httpx: the lean path of the ``anthropic`` preset.

``POST {base_url}/v1/messages`` (``base_url`` is the server root) with ``x-api-key`` (or, in
bearer mode, the OAuth token and beta header) and ``anthropic-version``. The conversation is
sent in Anthropic's own format: the system prompt as the top-level ``system``, tool calls as
``tool_use`` blocks, tool results as ``tool_result`` blocks of a user turn, pictures as
base64 ``image`` blocks; ``max_tokens`` is required by the API. The answer streams as named
server-sent events (``message_start``, ``content_block_start/delta/stop``,
``message_delta``, ``message_stop``, ``ping``, ``error``); unknown ones are ignored, and a
stream that ends before ``message_stop`` was cut off (an error, not a short answer).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from openpista.models import Message, Usage
from openpista.naming import wire_name
from openpista.providers.base import ChatResult, ProviderError, StreamEvent, TextDelta, ToolSpec
from openpista.providers.http_base import HttpProvider
from openpista.providers.litellm_provider import _text, _tool_call, _ToolCallAssembler

API_VERSION = "2023-06-01"
"""The ``anthropic-version`` header: the Messages API's only stable version."""
DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` of every request (the API requires one; litellm sends the same)."""
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
"""The HTTP status each documented error ``type`` stands for (an ``error`` event has none)."""

Block = dict[str, Any]


class AnthropicMessagesProvider(HttpProvider):
    """The ``anthropic`` preset served without litellm."""

    path = "/v1/messages"
    api = "the Anthropic API's root (without /v1)"
    answer = "an Anthropic message"
    error_statuses = ERROR_STATUSES

    def _wire_tools(self, tools: list[ToolSpec]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        names = {wire_name(tool.name): tool.name for tool in tools}
        wire = [
            {"name": wire_name(t.name), "description": t.description, "input_schema": t.parameters}
            for t in tools
        ]
        return wire, names

    def _body(
        self, messages: list[Message], wire_tools: list[dict[str, Any]], *, stream: bool
    ) -> dict[str, Any]:
        system, turns = to_anthropic(messages)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": turns,
        }
        if system:
            body["system"] = system
        if wire_tools:
            body["tools"] = wire_tools
        if stream:
            body["stream"] = True
        return body

    def _auth(self) -> dict[str, str]:
        """``x-api-key`` (none without a key; bearer mode sends the token in ``_headers``)."""
        key = self._secret()
        plain = {"x-api-key": key} if key and not self._bearer() else {}
        return {"anthropic-version": API_VERSION} | plain | self._headers()

    def _result(self, body: Any, names: dict[str, str]) -> ChatResult:
        blocks = body["content"]
        if not isinstance(blocks, list):
            raise TypeError("content is not a list of blocks")
        text = "".join(_text(b.get("text")) for b in blocks if b.get("type") == "text")
        calls = [
            _tool_call(
                _text(b.get("id")) or None, _text(b.get("name")), _json_text(b.get("input")), names
            )
            for b in blocks
            if b.get("type") == "tool_use"
        ]
        usage = _usage(body.get("usage")) or Usage()
        return ChatResult(text=text, tool_calls=calls, usage=usage)

    async def _streamed(
        self, response: httpx.Response, names: dict[str, str]
    ) -> AsyncIterator[StreamEvent]:
        text: list[str] = []
        calls = _ToolCallAssembler(names)
        prompt = completion = 0
        seen = stopped = False
        async for event in self._events(response):
            seen = True
            kind = event.get("type")
            index = event.get("index")
            if kind == "message_start":
                message = event.get("message")
                usage = _usage(message.get("usage") if isinstance(message, dict) else None)
                if usage is not None:
                    prompt, completion = usage.prompt_tokens, usage.completion_tokens
            elif kind == "content_block_start":
                block = event.get("content_block")
                block = block if isinstance(block, dict) else {}
                if block.get("type") == "tool_use":
                    start = block.get("input")
                    arguments = _json_text(start) if start else ""
                    function = {"name": _text(block.get("name")), "arguments": arguments}
                    yield calls.add({"index": index, "id": block.get("id"), "function": function})
                elif block.get("type") == "text" and _text(block.get("text")):
                    text.append(block["text"])
                    yield TextDelta(block["text"])
            elif kind == "content_block_delta":
                delta = event.get("delta")
                delta = delta if isinstance(delta, dict) else {}
                if delta.get("type") == "text_delta" and (piece := _text(delta.get("text"))):
                    text.append(piece)
                    yield TextDelta(piece)
                elif delta.get("type") == "input_json_delta":
                    fragment = {"arguments": _text(delta.get("partial_json"))}
                    yield calls.add({"index": index, "function": fragment})
            elif kind == "message_delta":
                # output_tokens here is the running total, not an increment.
                usage = _usage(event.get("usage"))
                if usage is not None and usage.completion_tokens:
                    completion = usage.completion_tokens
                    prompt = usage.prompt_tokens or prompt
            elif kind == "message_stop":
                stopped = True
        if not seen:  # a page or a body that is no event stream at all: not this API
            raise self._malformed("no server-sent event at all")
        if not stopped:
            raise ProviderError(
                "other",
                f"{self.name}'s answer broke off before its end (no message_stop event): "
                f"the connection was cut, try again",
            )
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
        yield ChatResult(text="".join(text), tool_calls=calls.finish(), usage=usage)


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and the turns in Anthropic's format: consecutive messages of one
    role (tool results are the user's) merged into one turn of content blocks."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            system.append(message.content)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(s for s in system if s), turns


def _blocks(message: Message) -> list[Block]:
    images = [_image(a.mime_type, a.data or "") for a in message.images()]
    result = message.tool_result
    if message.role == "tool" and result is not None:
        content: list[Block] = [{"type": "text", "text": result.output or "(no output)"}]
        block: Block = {"type": "tool_result", "tool_use_id": result.call_id}
        return [block | {"content": content + images, "is_error": result.is_error}]
    blocks: list[Block] = [{"type": "text", "text": message.content}] if message.content else []
    blocks += images
    # The decoded arguments, so that a malformed original is not sent back.
    blocks += [
        {"type": "tool_use", "id": c.id, "name": wire_name(c.name), "input": c.arguments}
        for c in message.tool_calls
    ]
    return blocks or [{"type": "text", "text": "(empty)"}]


def _image(mime_type: str, data: str) -> Block:
    return {"type": "image", "source": {"type": "base64", "media_type": mime_type, "data": data}}


def _usage(usage: Any) -> Usage | None:
    """:class:`Usage` of an Anthropic ``usage`` object: the prompt counts the cached input
    too (counts that are not integers read as 0); ``None`` without one."""
    if not isinstance(usage, dict):
        return None
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    prompt = sum(_count(usage.get(key)) for key in keys)
    return Usage(prompt_tokens=prompt, completion_tokens=_count(usage.get("output_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _json_text(value: Any) -> str:
    """A tool's ``input`` as JSON text (a string, sent by a broken server, as it is)."""
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)
