"""OpenAI's Responses API (``POST {base_url}/responses``) through litellm's ``aresponses``.

Selected with ``[providers.openai] api = "responses"``. The conversation becomes Responses
input items (system messages go to ``instructions``; tool calls and results become
``function_call`` / ``function_call_output`` items), tool names are wire-safe and mapped back,
and the SSE events (``response.output_text.delta``, ``response.output_item.added``,
``response.function_call_arguments.delta``, ``response.completed``...) become the provider's
:data:`~openpista.providers.base.StreamEvent` values.

ChatGPT subscription mode: when ``account_id`` or an ``id_token`` is configured, the request
carries ``chatgpt-account-id`` (from the id_token's ``https://api.openai.com/auth`` claim,
decoded with PyJWT, signature not checked: the token comes from our own login and the claim
only picks the account) and is sent with ``store: false``; ``base_url`` points at the
subscription backend.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator
from typing import Any

from openpista.models import Message, ToolCall, Usage
from openpista.naming import wire_name
from openpista.providers.base import (
    ChatResult,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
)
from openpista.providers.litellm_provider import (
    LiteLLMProvider,
    _clean,
    _close,
    _tool_call,
    load_litellm,
)

AUTH_CLAIM = "https://api.openai.com/auth"
CHATGPT_BASE_URL = "https://chatgpt.com/backend-api/codex"

_SERIALIZER_WARNING = r"Pydantic serializer warnings"


def chatgpt_account_id(id_token: str) -> str | None:
    """The ``chatgpt_account_id`` in an OpenAI id_token's auth claim (None if absent/invalid)."""
    import jwt

    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    auth = claims.get(AUTH_CLAIM) if isinstance(claims, dict) else None
    account = auth.get("chatgpt_account_id") if isinstance(auth, dict) else None
    return account if isinstance(account, str) and account else None


def to_responses_input(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """``instructions`` (the system messages) and the input items of a conversation."""
    system = [m.content for m in messages if m.role == "system" and m.content]
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool" and message.tool_result is not None:
            result = message.tool_result
            items.append(
                {"type": "function_call_output", "call_id": result.call_id, "output": result.output}
            )
        elif message.role == "assistant":
            if message.content:
                items.append({"role": "assistant", "content": message.content})
            items += [
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": wire_name(call.name),
                    "arguments": json.dumps(call.arguments),
                }
                for call in message.tool_calls
            ]
        else:
            role = "user" if message.role == "tool" else message.role
            items.append({"role": role, "content": _content(message)})
        if message.role == "tool" and message.images():
            items.append({"role": "user", "content": _content(message, "Images from the tool:")})
    return ("\n\n".join(system) or None), items


def _content(message: Message, text: str | None = None) -> str | list[dict[str, Any]]:
    """A message's text, with its pictures as ``input_image`` parts when it has any."""
    images = message.images()
    text = message.content if text is None else text
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    return parts + [{"type": "input_image", "image_url": a.data_url()} for a in images]


def _tools(tools: list[ToolSpec]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    names = {wire_name(tool.name): tool.name for tool in tools}
    wire = [
        {
            "type": "function",
            "name": wire_name(tool.name),
            "description": tool.description,
            "parameters": tool.parameters,
        }
        for tool in tools
    ]
    return wire, names


def _get(obj: Any, key: str) -> Any:
    """A field of a litellm event or item, which may be a model or a plain dict."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _kind(event: Any) -> str:
    kind = _get(event, "type")
    return str(kind.value if isinstance(kind, enum.Enum) else kind)


def _usage(response: Any) -> Usage | None:
    usage = _get(response, "usage")
    if usage is None:
        return None
    return Usage(
        prompt_tokens=_get(usage, "input_tokens") or 0,
        completion_tokens=_get(usage, "output_tokens") or 0,
    )


class _Calls:
    """Function calls of a streamed response, numbered in order of appearance."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.slots: dict[str, int] = {}  # item id -> slot
        self.calls: list[list[str]] = []  # [call id, wire name, arguments]

    def start(self, item: Any) -> ToolCallDelta:
        key = str(_get(item, "id"))
        name = str(_get(item, "name") or "")
        if key not in self.slots:
            self.slots[key] = len(self.calls)
            self.calls.append([str(_get(item, "call_id") or ""), name, ""])
        slot = self.slots[key]
        arguments = str(_get(item, "arguments") or "")
        self.calls[slot][2] = arguments
        return ToolCallDelta(
            index=slot,
            id=self.calls[slot][0] or None,
            name=self.names.get(name, name),
            arguments=arguments,
        )

    def delta(self, item_id: Any, text: str) -> ToolCallDelta | None:
        slot = self.slots.get(str(item_id))
        if slot is None:
            return None
        self.calls[slot][2] += text
        return ToolCallDelta(index=slot, arguments=text)

    def done(self, item: Any) -> None:
        slot = self.slots.get(str(_get(item, "id")))
        arguments = _get(item, "arguments")
        if slot is not None and isinstance(arguments, str):
            self.calls[slot][2] = arguments  # the complete text wins over the deltas

    def finish(self) -> list[ToolCall]:
        return [_tool_call(cid or None, name, args, self.names) for cid, name, args in self.calls]


class ResponsesProvider(LiteLLMProvider):
    """The ``openai`` preset speaking the Responses API (errors and retries as the parent)."""

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        wire_tools, names = _tools(tools)
        response = await self._request(messages, wire_tools, stream=True)
        text: list[str] = []
        calls = _Calls(names)
        usage = Usage()
        try:
            async for event in response:
                kind = _kind(event)
                if kind == "response.output_text.delta":
                    piece = str(_get(event, "delta") or "")
                    if piece:
                        text.append(piece)
                        yield TextDelta(piece)
                elif kind == "response.output_item.added":
                    item = _get(event, "item")
                    if _get(item, "type") == "function_call":
                        yield calls.start(item)
                elif kind == "response.function_call_arguments.delta":
                    delta = calls.delta(_get(event, "item_id"), str(_get(event, "delta") or ""))
                    if delta is not None:
                        yield delta
                elif kind == "response.output_item.done":
                    calls.done(_get(event, "item"))
                elif kind == "response.completed":
                    usage = _usage(_get(event, "response")) or usage
                elif kind in ("error", "response.failed", "response.incomplete"):
                    raise self._stream_failure(event)
        except Exception as exc:
            raise self._failure(exc) from None
        finally:
            await _close(response)
        yield self._checked(ChatResult(text="".join(text), tool_calls=calls.finish(), usage=usage))

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ChatResult:
        wire_tools, names = _tools(tools)
        response = await self._request(messages, wire_tools, stream=False)
        try:
            text: list[str] = []
            calls: list[ToolCall] = []
            for item in _get(response, "output") or ():
                if _get(item, "type") == "message":
                    for part in _get(item, "content") or ():
                        if _get(part, "type") == "output_text":
                            text.append(str(_get(part, "text") or ""))
                elif _get(item, "type") == "function_call":
                    calls.append(
                        _tool_call(
                            _get(item, "call_id"),
                            _get(item, "name"),
                            _get(item, "arguments"),
                            names,
                        )
                    )
            result = ChatResult(
                text="".join(text), tool_calls=calls, usage=_usage(response) or Usage()
            )
        except Exception as exc:
            raise self._failure(exc) from None
        return self._checked(result)

    def _stream_failure(self, event: Any) -> ProviderError:
        error = _get(_get(event, "response"), "error") or event
        message = str(_get(error, "message") or "the response failed")
        return ProviderError("other", f"{self.name} failed: {_clean(message, self._secret())}")

    def account_id(self) -> str | None:
        """The ChatGPT account to bill: ``account_id``, else the id_token's claim."""
        if self.settings.account_id:
            return self.settings.account_id
        if self.settings.id_token is not None:
            return chatgpt_account_id(self.settings.id_token.get_secret_value())
        return None

    def _headers(self) -> dict[str, str]:
        headers = super()._headers()
        account = self.account_id()
        if account:
            headers["chatgpt-account-id"] = account
        return headers

    async def _request(
        self, messages: list[Message], wire_tools: list[dict[str, Any]], *, stream: bool
    ) -> Any:
        litellm = await load_litellm()
        _quiet()
        instructions, items = to_responses_input(messages)
        options: dict[str, Any] = {
            "model": f"{self.backend.prefix}{self.model}",
            "input": items,
            "api_key": self._api_key(),
            "api_base": self.settings.base_url,
            "timeout": self.settings.timeout,
            "num_retries": 0,
            "max_retries": 0,
            "stream": stream,
        }
        if instructions:
            options["instructions"] = instructions
        if wire_tools:
            options["tools"] = wire_tools
        headers = self._headers()
        if headers:
            options["extra_headers"] = headers
        if "chatgpt-account-id" in headers:
            options["store"] = False  # the subscription backend keeps no server-side state
        return await self._retrying(litellm.aresponses, options)


def _quiet() -> None:
    import warnings

    # litellm's Responses usage model makes pydantic warn about its own serialisation.
    warnings.filterwarnings("ignore", _SERIALIZER_WARNING, UserWarning)
