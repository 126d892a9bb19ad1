"""OpenAI-compatible chat completions over httpx: the lean provider path.

``POST {base_url}/chat/completions`` over :class:`~openpista.providers.http_base.HttpProvider`
(one pooled client per provider), the answer read as server-sent events (``data:`` lines,
``[DONE]``), usage asked for with ``stream_options.include_usage``. What does not depend on
how a request travels is :class:`~openpista.providers.litellm_provider.BackendProvider`'s,
shared with the litellm path: the conversation and tools in OpenAI format, tool-call
assembly, rate-limit retries and errors phrased with the fix. Neither litellm nor the openai
SDK is imported (see docs/providers.md for the figures behind ``client = "auto"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from openpista.models import Message, Usage
from openpista.providers.base import ChatResult, StreamEvent, TextDelta, ToolSpec
from openpista.providers.http_base import HttpProvider
from openpista.providers.litellm_provider import (
    _ToolCallAssembler,
    _usage,
    _wire_tools,
    chat_result,
    to_wire_messages,
)


class HttpChatProvider(HttpProvider):
    """A preset whose API speaks OpenAI chat completions, served without litellm."""

    path = "/chat/completions"
    api = "an OpenAI-compatible API"
    answer = "a chat completion"

    def _wire_tools(self, tools: list[ToolSpec]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        return _wire_tools(tools)

    def _body(
        self, messages: list[Message], wire_tools: list[dict[str, Any]], *, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": to_wire_messages(messages)}
        if wire_tools:
            body["tools"] = wire_tools
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return body

    def _auth(self) -> dict[str, str]:
        """The key as a Bearer token (a keyless server gets no Authorization header), and
        the preset's own headers."""
        key = self._secret()
        return ({"authorization": f"Bearer {key}"} if key else {}) | self._headers()

    def _result(self, body: Any, names: dict[str, str]) -> ChatResult:
        return chat_result(body, names)

    async def _streamed(
        self, response: httpx.Response, names: dict[str, str]
    ) -> AsyncIterator[StreamEvent]:
        text: list[str] = []
        calls = _ToolCallAssembler(names)
        usage = Usage()
        async for chunk in self._events(response):
            usage = _usage(chunk.get("usage")) or usage
            for delta in _deltas(chunk):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    text.append(content)
                    yield TextDelta(content)
                for fragment in _list(delta.get("tool_calls")):
                    yield calls.add(fragment)
        yield ChatResult(text="".join(text), tool_calls=calls.finish(), usage=usage)


def _deltas(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``delta`` of the chunk's first choice (none for a usage-only chunk)."""
    choices = _list(chunk.get("choices"))
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    delta = choice.get("delta")
    return [delta] if isinstance(delta, dict) else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
