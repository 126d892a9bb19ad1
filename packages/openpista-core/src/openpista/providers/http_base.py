"""What the lean (httpx, no litellm) provider paths share: one pooled client per provider,
the POST with rate limits retried, error answers read (capped) and classified, server-sent
events, and the stream/complete flow. Each wire format (:mod:`.openai_chat`,
:mod:`.anthropic_messages`) adds its request body and how its answers are read.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from openpista.jsonsafe import JsonInputError, loads
from openpista.models import Message
from openpista.providers.base import ChatResult, ProviderError, StreamEvent, ToolSpec
from openpista.providers.litellm_provider import (
    MAX_UNSTREAMED_BYTES,
    BackendProvider,
    _clean,
    _describe,
    _Failure,
    _is_json,
    _read_capped,
)

if TYPE_CHECKING:
    from openpista.config import ProviderSettings
    from openpista.providers.litellm_provider import Backend

MAX_EVENT_BYTES = MAX_UNSTREAMED_BYTES
"""Largest server-sent event (or line) read: one event is never larger than a whole answer."""
MAX_ERROR_BYTES = 64 * 1024
"""What is read of an error answer's body (the message is cut to one line anyway)."""
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=4)
"""The openai SDK's pool size: enough for every session of a busy daemon at once (the pool
is :class:`~openpista.providers.http_pool.LeanConnectionPool`, whose cost per request does
not grow with it). Idle connections are not reused after 4 s: servers on uvicorn (vLLM, the
LiteLLM proxy, the LLM emulator) close them at 5 s, and a request sent on one as it closes
failed with a connection reset ("cannot reach"); httpx's default was those same 5 s."""


class HttpStatusError(Exception):
    """An HTTP error answer, its body read (capped): what :class:`_Failure` classifies."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status_code = response.status_code
        self.response = response


class HttpProvider(BackendProvider):
    """A provider whose requests go straight over httpx; subclasses give the wire format:
    :attr:`path` and :attr:`api` (named in errors), :meth:`_wire_tools`, :meth:`_body`,
    :meth:`_auth`, :meth:`_streamed` and :meth:`_result`."""

    path = ""
    """The endpoint, appended to ``base_url``."""
    api = ""
    """What ``base_url`` must serve, as errors name it ("an OpenAI-compatible API")."""
    answer = ""
    """What a whole answer is ("a chat completion"), as errors name it."""
    error_statuses: ClassVar[Mapping[str, int]] = {}
    """The HTTP status each error ``type`` of the API stands for (an error sent mid-stream
    has no status of its own)."""

    def __init__(self, backend: Backend, settings: ProviderSettings, model: str) -> None:
        super().__init__(backend, settings, model)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = 0
        self._closing = False

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        """Stream the answer: text and tool-call deltas, then one :class:`ChatResult`."""
        wire_tools, names = self._wire_tools(tools)
        self._active += 1
        try:
            response = await self._send(self._body(messages, wire_tools, stream=True))
            try:
                if _is_json(response):  # the server ignored "stream": the whole answer at once
                    whole = await self._whole(response, names, "the streaming request")
                    for event in self._replayed(whole):
                        yield event
                    return
                result = ChatResult()
                async for event in self._streamed(response, names):
                    if isinstance(event, ChatResult):
                        result = event
                    else:
                        yield event
            finally:
                await response.aclose()
            yield self._checked(result)
        finally:
            await self._release()

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ChatResult:
        """Send the conversation and return the whole answer (no streaming)."""
        wire_tools, names = self._wire_tools(tools)
        self._active += 1
        try:
            response = await self._send(self._body(messages, wire_tools, stream=False))
            try:
                return self._checked(await self._whole(response, names, "the request"))
            finally:
                await response.aclose()
        finally:
            await self._release()

    async def aclose(self) -> None:
        """Close the connection pool (at once when idle, else when the last request ends)."""
        self._closing = True
        await self._release(ending=False)

    # -- the wire format (subclasses) ------------------------------------------------------

    def _wire_tools(self, tools: list[ToolSpec]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The tools as the API takes them, and the map from wire names to internal ones."""
        raise NotImplementedError

    def _body(
        self, messages: list[Message], wire_tools: list[dict[str, Any]], *, stream: bool
    ) -> dict[str, Any]:
        """The request's JSON body."""
        raise NotImplementedError

    def _auth(self) -> dict[str, str]:
        """The headers that carry the key, and the preset's own."""
        raise NotImplementedError

    def _streamed(
        self, response: httpx.Response, names: dict[str, str]
    ) -> AsyncIterator[StreamEvent]:
        """The deltas of a streamed answer, then its (unchecked) :class:`ChatResult`."""
        raise NotImplementedError

    def _result(self, body: Any, names: dict[str, str]) -> ChatResult:
        """The answer of a whole body (decoded JSON); raises ``LookupError``, ``TypeError``
        or ``AttributeError`` when it is not one."""
        raise NotImplementedError

    # -- shared internals ------------------------------------------------------------------

    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        """POST the request (rate limits retried); the response, its body not read yet."""
        content = json.dumps(body).encode()
        response: httpx.Response = await self._retrying(self._post, {"content": content})
        return response

    async def _post(self, content: bytes) -> httpx.Response:
        client = self._http()
        request = client.build_request("POST", self._url, content=content, headers=self._auth())
        try:
            response = await client.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.WriteError):
            # A kept-alive connection the server closed as the request went out (it
            # "disconnected without sending a response"): once more, on a new connection.
            response = await client.send(request, stream=True)
        if response.status_code < 400:
            return response
        try:
            body = await _read_capped(response, MAX_ERROR_BYTES)
        finally:
            await response.aclose()
        # The body is decoded already: keep only the headers that say what it means.
        kept = {k: v for k in ("content-type", "retry-after") if (v := response.headers.get(k))}
        raise HttpStatusError(httpx.Response(response.status_code, headers=kept, content=body))

    @functools.cached_property
    def _url(self) -> httpx.URL:
        """The endpoint, parsed once (as a string, httpx parses it again at every request)."""
        return httpx.URL(f"{(self.settings.base_url or '').rstrip('/')}{self.path}")

    def _http(self) -> httpx.AsyncClient:
        """This provider's client, opened on first use in the running event loop (a client
        is bound to the loop its connections were made in)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # httpcore is imported with the first client, as httpx itself does.
            from openpista.providers.http_pool import LeanTransport

            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout),
                limits=LIMITS,
                transport=LeanTransport(LIMITS),
                headers={"user-agent": "openpista", "content-type": "application/json"},
            )
            self._loop = loop
        return self._client

    async def _release(self, *, ending: bool = True) -> None:
        """One request fewer in flight; close the pool once closing was asked and none is."""
        self._active -= ending
        if self._closing and not self._active and self._client is not None:
            client, self._client, self._closing = self._client, None, False
            if self._loop is asyncio.get_running_loop():  # else its loop and sockets are gone
                await client.aclose()

    async def _whole(
        self, response: httpx.Response, names: dict[str, str], what: str
    ) -> ChatResult:
        """The :class:`ChatResult` of a whole (non-streamed) answer."""
        try:
            raw = await _read_capped(response, MAX_UNSTREAMED_BYTES)
        except Exception as exc:
            raise self._failure(exc) from None
        try:
            return self._result(loads(raw, max_bytes=MAX_UNSTREAMED_BYTES), names)
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise ProviderError(
                "other",
                f"{self.name} answered {what} with a JSON body that is not {self.answer} "
                f"({_clean(str(exc), self._secret())})",
            ) from None

    async def _events(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        """The decoded events of the stream, up to ``[DONE]`` (what follows is read to the
        end but ignored: a connection whose response was read whole goes back to the pool);
        a malformed event, or an error the server sends mid-stream, is a ProviderError."""
        done = False
        try:
            async for data in sse_data(response, MAX_EVENT_BYTES):
                done = done or data.strip() == "[DONE]"
                if done:
                    continue
                try:
                    event = loads(data, max_bytes=MAX_EVENT_BYTES)
                except JsonInputError as exc:
                    raise self._malformed(str(exc)) from None
                if not isinstance(event, dict):
                    raise self._malformed("an event is not a JSON object")
                if event.get("error") is not None:
                    raise self._stream_error(event["error"])
                yield event
        except (ProviderError, GeneratorExit):
            raise
        except SseEventTooLarge as exc:
            raise self._malformed(str(exc)) from None
        except Exception as exc:
            raise self._failure(exc) from None

    def _malformed(self, reason: str) -> ProviderError:
        return ProviderError(
            "other",
            f"{self.name} sent a malformed stream ({_clean(reason, self._secret())}): check "
            f"that [providers.{self.name}] base_url is {self.api}",
        )

    def _stream_error(self, error: Any) -> ProviderError:
        """An error object sent in the stream (as OpenRouter does when a model fails)."""
        fields = error if isinstance(error, dict) else {"message": str(error)}
        code = fields.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else None
        if status is None and isinstance(kind := fields.get("type"), str):
            status = self.error_statuses.get(kind)
        codes = frozenset(v for v in (fields.get("type"), code) if isinstance(v, str))
        message = fields.get("message")
        detail = message if isinstance(message, str) else json.dumps(fields)[:300]
        failure = _Failure(status, detail, None, connect=False, timeout=False, codes=codes)
        return _describe(failure, self)


class SseEventTooLarge(ValueError):
    """A server-sent event (or a line) longer than the limit."""


async def sse_data(response: httpx.Response, limit: int) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event of ``response``: lines ending in LF or CRLF, a
    blank line ends an event, its ``data:`` lines joined by newlines; comments and the other
    fields (``event``, ``id``, ``retry``) are ignored. A last event not followed by a blank
    line is still delivered. Raises :class:`SseEventTooLarge` past ``limit`` bytes."""
    pending = bytearray()
    scanned = 0  # bytes of ``pending`` already searched for a line end
    data: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", max(start, scanned))) >= 0:
            line = bytes(pending[start:end])
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield b"\n".join(data).decode("utf-8", "replace")
                data, size = [], 0
                continue
            field, _, value = line.partition(b":")
            if field == b"data":
                data.append(value[1:] if value.startswith(b" ") else value)
                size += len(value)
                if size > limit:
                    raise SseEventTooLarge(f"an event is larger than {limit} bytes")
        del pending[:start]
        scanned = len(pending)
        if scanned > limit:
            raise SseEventTooLarge(f"a line is longer than {limit} bytes")
    if pending.startswith(b"data:"):
        value = bytes(pending[5:]).rstrip(b"\r")
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield b"\n".join(data).decode("utf-8", "replace")
