"""An :class:`~openpista.providers.base.LlmProvider` on top of litellm.

litellm speaks every backend's wire format; this module adds what openpista needs on top:
OpenAI-format messages built from :class:`~openpista.models.Message`, wire-safe tool names
mapped back to internal ones, retries of rate limits with exponential backoff,
and errors turned into :class:`~openpista.providers.base.ProviderError` messages that name
the fix. litellm is imported on first use only: importing it costs about two seconds.
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import json
import logging
import os
import re
import socket
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

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

if TYPE_CHECKING:
    from types import ModuleType

    from openpista.config import ProviderSettings

log = logging.getLogger(__name__)

_READONLY_WARNING = r"Items? .* on TypedDict class .* using the `ReadOnly` qualifier"
# litellm's embeddings response type declares list[float]; base64 vectors make pydantic warn.
_SERIALIZER_WARNING = r"Pydantic serializer warnings"

ModelsApi = Literal["openai", "anthropic", "ollama"]

ANTHROPIC_OAUTH_BETA = "oauth-2025-04-20"
MAX_UNSTREAMED_BYTES = 16 * 1024 * 1024
"""Largest whole chat completion read from a server that answers a stream request with one."""
QUOTA_CODE = "insufficient_quota"
"""OpenAI's error type and code of a 429 that means "no credit left", not "slow down"."""
BEARER_PLACEHOLDER = "bearer-mode"
"""What litellm sends as x-api-key in Anthropic bearer mode (it cannot omit the header)."""


@dataclass(frozen=True)
class Backend:
    """How litellm reaches one preset's API.

    ``prefix`` is litellm's provider prefix (``openai/``); ``key_env`` the environment
    variables named in error messages; ``models_api`` the dialect of the endpoint that lists
    models (None: only ``static_models``); ``local`` marks servers the user runs themselves.
    """

    preset: str
    prefix: str
    key_env: tuple[str, ...] = ()
    needs_key: bool = True
    models_api: ModelsApi | None = "openai"
    local: bool = False
    static_models: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    keyless_placeholder: bool = True
    """Send a placeholder key when there is none (False: let litellm find its own credentials)."""


class BackendProvider:
    """What every provider of a :class:`Backend` shares, whatever carries its requests: the
    key and headers, rate-limit retries, errors phrased with the fix, the empty-answer check
    and the models listing. :class:`LiteLLMProvider` sends requests through litellm,
    :class:`~openpista.providers.openai_chat.HttpChatProvider` through httpx."""

    def __init__(self, backend: Backend, settings: ProviderSettings, model: str) -> None:
        self.name = backend.preset
        self.model = model
        self.backend = backend
        self.settings = settings

    async def list_models(self) -> list[str]:
        """Models the API lists (``GET .../models``), else the preset's well-known ones."""
        base = self.settings.base_url
        if self.backend.models_api is None or not base:
            return list(self.backend.static_models)
        try:
            return await _fetch_models(
                self.backend.models_api,
                base,
                None if self._bearer() else self._api_key(),
                self.settings.timeout,
                self._headers(),
            )
        except Exception as exc:
            raise self._failure(exc) from None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Embedding vectors of ``texts`` by this provider's model (litellm's embeddings
        API, OpenAI's ``POST /embeddings`` wire format), one per text, in order. Asked for
        as base64 float32 (reading a JSON list of floats through the openai SDK costs
        ~10 µs a number); a server that answers with lists anyway is read too."""
        litellm = await load_litellm()
        options: dict[str, Any] = {
            "model": f"{self.backend.prefix}{self.model}",
            "input": texts,
            "encoding_format": "base64",
            "api_key": self._api_key(),
            "api_base": self.settings.base_url,
            "timeout": self.settings.timeout,
            "num_retries": 0,
            "max_retries": 0,
        }
        headers = self._headers()
        if headers:
            options["extra_headers"] = headers
        warnings.filterwarnings("ignore", _SERIALIZER_WARNING, UserWarning)
        response = await self._retrying(litellm.aembedding, options)
        try:
            items = sorted(response.data, key=lambda item: int(item["index"]))
            return [_embedding(item["embedding"]) for item in items]
        except (LookupError, TypeError, ValueError, binascii.Error) as exc:
            raise ProviderError(
                "other", f"{self.name} sent an embeddings answer that cannot be read ({exc})"
            ) from None

    # -- shared internals ------------------------------------------------------------------

    def _checked(self, result: ChatResult) -> ChatResult:
        """``result``, unless it holds neither text nor a tool call: an empty answer is an
        error, never a silent blank reply."""
        if result.text.strip() or result.tool_calls:
            return result
        where = self.settings.base_url or f"the {self.name} API"
        raise ProviderError(
            "empty",
            f"{self.name} sent an empty answer (no text, no tool call) from {where} for the "
            f"model '{self.model}': try again, or check that the server serves this model",
        )

    def _replayed(self, whole: ChatResult) -> list[StreamEvent]:
        """A whole answer (the server ignored ``stream``) as the events a stream gives: its
        text, then the checked result."""
        return [*([TextDelta(whole.text)] if whole.text else []), self._checked(whole)]

    async def _retrying(self, request: Any, options: dict[str, Any]) -> Any:
        """``await request(**options)``, rate limits retried with exponential backoff;
        failures become :class:`ProviderError`."""
        retries = self.settings.max_retries
        for attempt in range(retries + 1):
            try:
                return await request(**options)
            except Exception as exc:
                if attempt == retries or not _is_rate_limit(exc):
                    raise self._failure(exc) from None
                await asyncio.sleep(_backoff(exc, self.settings.retry_base_delay, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _api_key(self) -> str | None:
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
        if key and self._bearer():
            # litellm always sends its api_key as x-api-key to Anthropic (only sk-ant-oat
            # tokens become a Bearer): give it a placeholder, the token goes in _headers().
            return BEARER_PLACEHOLDER
        # A keyless backend gets a placeholder: otherwise litellm would fall back to
        # OPENAI_API_KEY and send the user's OpenAI key to a local or custom server.
        if key or self.backend.needs_key or not self.backend.keyless_placeholder:
            return key
        return "none"

    def _secret(self) -> str | None:
        """The configured key or token itself (what must never appear in messages)."""
        return self.settings.api_key.get_secret_value() if self.settings.api_key else None

    def _bearer(self) -> bool:
        return self.backend.models_api == "anthropic" and self.settings.auth_header == "bearer"

    def _headers(self) -> dict[str, str]:
        """Extra request headers: the preset's own, and the Anthropic bearer-mode ones."""
        headers = dict(self.backend.headers)
        token = self._secret()
        if token and self._bearer():
            headers["Authorization"] = f"Bearer {token}"
            headers["anthropic-beta"] = ANTHROPIC_OAUTH_BETA
        return headers

    def _failure(self, exc: BaseException) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        log.debug("%s request failed: %s", self.name, type(exc).__name__)
        return _describe(_Failure.of(exc), self)


class LiteLLMProvider(BackendProvider):
    """A provider preset served through litellm (see :class:`Backend`)."""

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        """Stream the answer: text and tool-call deltas, then one :class:`ChatResult`."""
        wire_tools, names = _wire_tools(tools)
        response = await self._call(messages, wire_tools, stream=True)
        whole = await self._unstreamed(response, names)
        if whole is not None:  # the server ignored "stream": its whole answer came at once
            for event in self._replayed(whole):
                yield event
            return
        text: list[str] = []
        calls = _ToolCallAssembler(names)
        usage = Usage()
        try:
            async for chunk in response:
                usage = _usage(getattr(chunk, "usage", None)) or usage
                for choice in chunk.choices[:1]:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield TextDelta(delta.content)
                    for fragment in delta.tool_calls or ():
                        yield calls.add(fragment)
        except Exception as exc:
            raise self._failure(exc) from None
        finally:
            await _close(response)
        yield self._checked(ChatResult(text="".join(text), tool_calls=calls.finish(), usage=usage))

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ChatResult:
        """Send the conversation and return the whole answer (no streaming)."""
        wire_tools, names = _wire_tools(tools)
        response = await self._call(messages, wire_tools, stream=False)
        try:
            message = response.choices[0].message
            calls = [
                _tool_call(call.id, call.function.name, call.function.arguments, names)
                for call in message.tool_calls or ()
            ]
            usage = _usage(getattr(response, "usage", None)) or Usage()
            result = ChatResult(text=message.content or "", tool_calls=calls, usage=usage)
        except Exception as exc:
            raise self._failure(exc) from None
        return self._checked(result)

    async def prepare(self) -> None:
        """Import litellm (seconds, off the event loop) so that the next request times only
        its round trip (``openpista model test``)."""
        await load_litellm()

    # -- internals -------------------------------------------------------------------------

    async def _unstreamed(self, response: Any, names: dict[str, str]) -> ChatResult | None:
        """The answer of a server that replied to a streaming request with a plain chat
        completion (``application/json``), else None (a real stream, not read yet)."""
        raw = getattr(getattr(response, "completion_stream", None), "response", None)
        if not _is_json(raw):
            return None
        from openpista.jsonsafe import JsonInputError, loads

        try:
            body = loads(
                await _read_capped(raw, MAX_UNSTREAMED_BYTES), max_bytes=MAX_UNSTREAMED_BYTES
            )
            return chat_result(body, names)
        except (JsonInputError, LookupError, TypeError, AttributeError) as exc:
            raise ProviderError(
                "other",
                f"{self.name} answered the streaming request with a JSON body that is not a "
                f"chat completion ({_clean(str(exc), self._secret())})",
            ) from None
        finally:
            await _close(response)

    async def _call(
        self, messages: list[Message], wire_tools: list[dict[str, Any]], *, stream: bool
    ) -> Any:
        """One litellm request, rate limits retried with exponential backoff."""
        litellm = await load_litellm()
        options: dict[str, Any] = {
            "model": f"{self.backend.prefix}{self.model}",
            "messages": to_wire_messages(messages),
            "api_key": self._api_key(),
            "api_base": self.settings.base_url,
            "timeout": self.settings.timeout,
            # Retries are ours (below), so that only rate limits are retried, and only as
            # often as the settings say; neither litellm nor the openai client retry.
            "num_retries": 0,
            "max_retries": 0,
            "drop_params": True,
        }
        headers = self._headers()
        if headers:
            options["extra_headers"] = headers
        if self.settings.api_version:
            options["api_version"] = self.settings.api_version
        if wire_tools:
            options["tools"] = wire_tools
        if stream:
            options |= {"stream": True, "stream_options": {"include_usage": True}}
        return await self._retrying(litellm.acompletion, options)


def _embedding(value: Any) -> list[float]:
    """One vector of an embeddings answer: base64 of little-endian float32, or numbers."""
    if not isinstance(value, str):
        return [float(x) for x in value]
    numbers = array.array("f")
    numbers.frombytes(base64.b64decode(value, validate=True))
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers.tolist()


_imported: ModuleType | None = None  # set once litellm is fully imported and configured


async def load_litellm() -> ModuleType:
    """litellm, imported off the event loop the first time (seconds). ``"litellm" in
    sys.modules`` is no sign it is ready: it is true while another thread still imports it,
    and importing it on the loop then blocks every session on the import lock."""
    return _imported if _imported is not None else await asyncio.to_thread(_litellm)


def _litellm() -> ModuleType:
    """litellm, imported on first use, with its network side effects turned off."""
    global _imported
    # litellm's types make pydantic warn (once, lazily, mid-stream) about TypedDict ReadOnly
    # items: noise for the user. Re-added on each call because test runners reset filters.
    warnings.filterwarnings("ignore", _READONLY_WARNING, UserWarning)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # Otherwise litellm fetches its Anthropic beta-header table from GitHub on first use.
    os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    import litellm

    litellm.suppress_debug_info = True
    # Token counting for some models (Together's Llama) would fetch a tokenizer from
    # Hugging Face on every call; the bundled tiktoken estimate is good enough.
    litellm.disable_hf_tokenizer_download = True
    _imported = litellm
    return litellm


def to_wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation in OpenAI chat format (litellm translates it for other APIs).

    Pictures sent by the user become image parts of their message; pictures returned by
    tools (which a ``tool`` message cannot carry) follow the tool results as a user message.
    """
    wire: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role == "tool" and message.tool_result is not None:
            result = message.tool_result
            wire.append({"role": "tool", "tool_call_id": result.call_id, "content": result.output})
            tool_images += _image_parts(message)
            following = messages[index + 1] if index + 1 < len(messages) else None
            if tool_images and (following is None or following.role != "tool"):
                text = {"type": "text", "text": "Images returned by the tools above:"}
                wire.append({"role": "user", "content": [text, *tool_images]})
                tool_images = []
        elif message.role == "assistant" and message.tool_calls:
            calls = [
                {
                    "id": call.id,
                    "type": "function",
                    # The decoded arguments, so that a malformed original is not sent back
                    # (litellm's Anthropic translation would fail to parse it).
                    "function": {
                        "name": wire_name(call.name),
                        "arguments": json.dumps(call.arguments),
                    },
                }
                for call in message.tool_calls
            ]
            wire.append(
                {"role": "assistant", "content": message.content or None, "tool_calls": calls}
            )
        else:
            role = "user" if message.role == "tool" else message.role
            images = _image_parts(message)
            if images:
                text = {"type": "text", "text": message.content}
                wire.append({"role": role, "content": [text, *images]})
            else:
                wire.append({"role": role, "content": message.content})
    return wire


def _image_parts(message: Message) -> list[dict[str, Any]]:
    return [{"type": "image_url", "image_url": {"url": a.data_url()}} for a in message.images()]


def _wire_tools(tools: list[ToolSpec]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Tools in OpenAI format, and the map from wire names back to internal names."""
    names = {wire_name(tool.name): tool.name for tool in tools}
    wire = [
        {
            "type": "function",
            "function": {
                "name": wire_name(tool.name),
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]
    return wire, names


def _tool_call(
    call_id: str | None, name: str | None, arguments: Any, names: dict[str, str]
) -> ToolCall:
    """A finished tool call: internal name, decoded arguments (raw text kept if not an object).

    ``arguments`` is the JSON text the API sends; an object sent as is (some compatible
    servers do) is taken as the decoded arguments."""
    if isinstance(arguments, dict):
        arguments = json.dumps(arguments)
    text = arguments if isinstance(arguments, str) else ""
    decoded = _json(text) if text.strip() else {}
    if isinstance(decoded, str):
        # Double-encoded (the object sent as a JSON string): some models do this, and
        # litellm re-encodes an Anthropic tool input that is a string.
        text, decoded = decoded, _json(decoded)
    wire = name or ""
    # A tool result must name its call; litellm leaves some calls without an id (Ollama's
    # when the arguments are not valid JSON).
    call_id = call_id or f"call_{uuid.uuid4().hex[:16]}"
    if isinstance(decoded, dict):
        return ToolCall(id=call_id, name=names.get(wire, wire), arguments=decoded)
    return ToolCall(id=call_id, name=names.get(wire, wire), raw_arguments=text)


def chat_result(body: Any, names: dict[str, str]) -> ChatResult:
    """The answer in a whole chat completion (decoded JSON); raises ``LookupError``,
    ``TypeError`` or ``AttributeError`` when ``body`` is not one."""
    message = body["choices"][0]["message"]
    calls = [
        _tool_call(_text(call.get("id")) or None, _text(call["function"].get("name")),
                   call["function"].get("arguments"), names)
        for call in message.get("tool_calls") or ()
    ]  # fmt: skip
    usage = _usage(body.get("usage")) or Usage()
    return ChatResult(text=_text(message.get("content")), tool_calls=calls, usage=usage)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class _ToolCallAssembler:
    """Collects streamed tool-call fragments into whole calls.

    Calls are numbered in the order they first appear, whatever index the API gives them.
    """

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names
        self._slots: dict[int, int] = {}
        self._calls: list[list[str | None]] = []  # [id, wire name, arguments]

    def add(self, fragment: Any) -> ToolCallDelta:
        """Add one fragment (litellm's object or the decoded JSON of an SSE chunk)."""
        index = _field(fragment, "index")
        slot = self._slots.setdefault(index if isinstance(index, int) else 0, len(self._slots))
        if slot == len(self._calls):
            self._calls.append([None, None, ""])
        call = self._calls[slot]
        function = _field(fragment, "function")
        name = _text(_field(function, "name")) or None
        arguments = _text(_field(function, "arguments"))
        call_id = _text(_field(fragment, "id")) or None
        call[0] = call[0] or call_id
        call[1] = call[1] or name
        call[2] = f"{call[2]}{arguments}"
        shown = self._names.get(name, name) if name else None
        return ToolCallDelta(index=slot, id=call_id, name=shown, arguments=arguments)

    def finish(self) -> list[ToolCall]:
        return [_tool_call(call_id, name, args, self._names) for call_id, name, args in self._calls]


def _field(obj: Any, key: str) -> Any:
    """``obj[key]`` of a dict, else the attribute (None when missing)."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _text(value: Any) -> str:
    """A string field of a wire fragment: anything else (a hostile number, a list) is ""."""
    return value if isinstance(value, str) else ""


def _is_json(response: Any) -> bool:
    """Whether ``response`` is an httpx response whose body is JSON (not an SSE stream)."""
    import httpx

    if not isinstance(response, httpx.Response):
        return False
    kind: str = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json"


async def _read_capped(response: Any, limit: int) -> bytes:
    """The body of a streamed httpx response, at most ``limit`` + 1 bytes of it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


def _usage(usage: Any) -> Usage | None:
    """:class:`Usage` of litellm's usage object or of a JSON ``usage`` object (counts that
    are not integers read as 0); ``None`` without one."""
    if usage is None:
        return None
    keys = ("prompt_tokens", "completion_tokens")
    if isinstance(usage, dict):
        counts = [usage.get(key) for key in keys]
    else:
        counts = [getattr(usage, key, 0) for key in keys]
    prompt, completion = (n if isinstance(n, int) and n >= 0 else 0 for n in counts)
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


async def _close(response: Any) -> None:
    # Release the HTTP connection even when the consumer stops reading early.
    close = getattr(response, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing is best effort; the answer is already complete
            log.debug("closing the %s stream failed", type(response).__name__)


def _is_rate_limit(exc: BaseException) -> bool:
    """HTTP 429 that waiting can cure (not an account out of credit: that is billing)."""
    return getattr(exc, "status_code", None) == 429 and not _Failure.of(exc).out_of_quota


MAX_BACKOFF = 60.0
"""Longest wait before a retry, in seconds (also caps what ``retry-after`` asks)."""


def _backoff(error: BaseException, base_delay: float, attempt: int) -> float:
    """The wait after failed ``attempt`` (0 for the first): ``base_delay * 2**attempt``
    seconds, or what the server's ``retry-after`` asks, at most :data:`MAX_BACKOFF`."""
    asked = _Failure.of(error).retry_after
    if asked is not None:
        return max(0.0, min(asked, MAX_BACKOFF))
    try:
        return max(0.0, min(base_delay * 2.0**attempt, MAX_BACKOFF))
    except OverflowError:
        return MAX_BACKOFF


async def _fetch_models(
    api: ModelsApi,
    base: str,
    key: str | None,
    limit: float,
    extra: dict[str, str] | None = None,
) -> list[str]:
    """Ask the API which models it serves; raises httpx errors for :func:`_describe`."""
    import httpx

    root = base.rstrip("/")
    headers: dict[str, str] = {}
    if api == "anthropic":
        url = f"{root}/v1/models"
        headers = {"anthropic-version": "2023-06-01"} | ({"x-api-key": key} if key else {})
    elif api == "ollama":
        url = f"{root}/api/tags"
    else:
        url = f"{root}/models"
        headers = {"authorization": f"Bearer {key}"} if key else {}
    headers |= extra or {}
    async with httpx.AsyncClient(timeout=limit) as client:
        response = await client.get(url, headers=headers)
        response.raise_for_status()
    data = response.json()
    # OpenAI and Anthropic answer {"data": [{"id"}]}, Together a bare list,
    # Ollama {"models": [{"name"}]}.
    items = (data.get("data") or data.get("models") or []) if isinstance(data, dict) else data
    found = (item.get("id") or item.get("name") for item in items if isinstance(item, dict))
    return sorted(str(name) for name in found if name)


# -- errors: what went wrong, phrased with the fix ---------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """What an exception chain (litellm -> openai/httpx -> socket) says about a failure."""

    status: int | None
    detail: str
    retry_after: float | None
    connect: bool
    timeout: bool
    codes: frozenset[str] = frozenset()
    """The error body's ``type`` and ``code`` (OpenAI format), e.g. ``insufficient_quota``."""

    @property
    def out_of_quota(self) -> bool:
        """The account has no credit left (OpenAI's 429 ``insufficient_quota``)."""
        return QUOTA_CODE in self.codes

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        import httpx

        openai = sys.modules.get("openai")  # loaded with litellm; never imported just for this
        timeout_types: tuple[type[BaseException], ...] = (httpx.TimeoutException, TimeoutError)
        connect_types: tuple[type[BaseException], ...] = (
            httpx.ConnectError,
            ConnectionError,
            socket.gaierror,
        )
        if openai is not None:
            timeout_types += (openai.APITimeoutError,)
            connect_types += (openai.APIConnectionError,)
        chain = list(_chain(exc))
        timeout = any(isinstance(e, timeout_types) for e in chain)
        connect = not timeout and any(isinstance(e, connect_types) for e in chain)
        status = getattr(exc, "status_code", None)
        responses = [
            r for e in chain if isinstance(r := getattr(e, "response", None), httpx.Response)
        ]
        if not isinstance(status, int):
            status = responses[0].status_code if responses else None
        retry_after = next((_seconds(r.headers.get("retry-after")) for r in responses), None)
        detail = _detail(chain, responses)
        return cls(status, detail, retry_after, connect, timeout, _codes(chain, responses))


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: rare enough to fall back to our own backoff
        return None


def _detail(chain: list[BaseException], responses: list[Any]) -> str:
    """The server's own error message if one can be found, else the exception's text."""
    for exc in chain:
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(message, str):
            return message
    for response in responses:
        try:
            text = response.text
        except Exception:  # noqa: S112  a streamed body never read: no error text
            continue
        if text.strip():
            return _error_message(text)
    text = str(chain[0]) if chain else ""
    # litellm wraps the server's text: "litellm.XError: AnthropicException - b'{...}'. Handle ..."
    text = re.sub(r"^(litellm\.\w+: )+(\w+: )?(\w+Exception - )?", "", text)
    text = re.sub(r"\. Handle with `litellm\.\w+`\.$", "", text)
    text = re.sub(r"^b'(.*)'$", r"\1", text)
    return _error_message(text)


def _codes(chain: list[BaseException], responses: list[Any]) -> frozenset[str]:
    """``error.type`` and ``error.code`` of the server's error body, wherever it was kept."""
    bodies = [getattr(exc, "body", None) for exc in chain]
    for response in responses:
        try:
            data = json.loads(response.text)
        except Exception:  # noqa: S112  not JSON, or a body never read: no error text
            continue
        bodies.append(data.get("error") if isinstance(data, dict) else None)
    found = (body.get(key) for body in bodies if isinstance(body, dict) for key in ("type", "code"))
    return frozenset(value for value in found if isinstance(value, str))


def _error_message(text: str) -> str:
    """``error.message`` of an OpenAI or Anthropic error body, else the text itself."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else text


def _describe(failure: _Failure, provider: BackendProvider) -> ProviderError:
    """The user-facing :class:`ProviderError` for ``failure``: what happened and the fix."""
    preset, settings, backend = provider.name, provider.settings, provider.backend
    section = f"[providers.{preset}]"
    status = failure.status
    detail = _clean(failure.detail, provider._secret())
    if failure.timeout:
        message = (
            f"{preset} did not answer within {settings.timeout:g} s: try again, "
            f"or raise {section} timeout"
        )
        return ProviderError("timeout", message)
    if failure.connect:
        where = settings.base_url or f"the {preset} API"
        fix = (
            f"is the server running? Start it (for Ollama: `ollama serve`) "
            f"or fix {section} base_url"
            if backend.local
            else f"check the network connection and {section} base_url"
        )
        return ProviderError("unreachable", f"cannot reach {preset} at {where}: {fix}")
    if status in (401, 403):
        env = (
            f"set {backend.key_env[0]} or {section} api_key"
            if backend.key_env
            else f"set {section} api_key"
        )
        message = f"the API key for {preset} was rejected (HTTP {status}): {env}"
        return ProviderError("auth", message, status=status)
    if status == 404:
        message = (
            f"{preset} does not know the model '{provider.model}' (HTTP 404): choose another with "
            f"[agent] model or --model (`openpista model list` shows them)"
        )
        return ProviderError("not_found", message, status=status)
    if failure.out_of_quota:
        message = (
            f"{preset} refused the request: the account has no credit left (HTTP {status}, "
            f"insufficient_quota). This is a billing problem, not a rate limit, and was not "
            f"retried: add credit or raise the spending limit in the provider's billing "
            f"settings, or use another key or provider ({detail})"
        )
        return ProviderError("quota", message, status=status)
    if status == 429:
        message = (
            f"{preset} is rate-limiting requests (HTTP 429), still after {settings.max_retries} "
            f"retries: wait a minute and try again, or raise {section} max_retries ({detail})"
        )
        return ProviderError("rate_limit", message, status=status)
    if status == 529 or "overloaded_error" in failure.codes:
        message = (
            f"{preset} is overloaded (HTTP {status or 529}): the service is busy for everyone, "
            f"not only this key; try again in a minute ({detail})"
        )
        return ProviderError("other", message, status=status or 529)
    if status in (400, 413, 422):
        return ProviderError(
            "bad_request", f"{preset} rejected the request (HTTP {status}): {detail}", status=status
        )
    shown = f"HTTP {status}" if status else "no HTTP status"
    return ProviderError("other", f"{preset} failed ({shown}): {detail}", status=status)


def _clean(text: str, secret: str | None) -> str:
    """One short line, the API key blanked out (and litellm's repeat of the message cut)."""
    if secret and len(secret) > 3:
        text = text.replace(secret, "***")
    text = text.split(" Original exception:", 1)[0]
    text = " ".join(text.split())
    return text if len(text) <= 300 else f"{text[:297]}..."
