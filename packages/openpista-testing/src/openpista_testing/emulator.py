"""A local LLM server speaking the OpenAI, Anthropic and Ollama wire formats, for tests.

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses`` (the Responses API: SSE events
``response.created``, ``response.output_item.added``/``done``, ``response.output_text.delta``,
``response.function_call_arguments.delta``/``done``, ``response.completed`` with usage) and
``GET /v1/models`` and ``POST /v1/embeddings`` (OpenAI; deterministic hashed bag-of-words
vectors, see :mod:`openpista_testing.embeddings`),
``POST /openai/deployments/{name}/chat/completions`` (Azure OpenAI: ``api-version`` query,
``api-key`` header), ``POST /v1/messages`` (Anthropic; ``GET /v1/models`` with an
``anthropic-version`` header), ``POST /api/chat`` and ``GET /api/tags`` (Ollama). Tool
names in scripted replies are wire names (``system_run``).

The real client library (litellm, the openai SDK, httpx) runs unchanged against it::

    with LlmEmulator() as emu:
        emu.reply_text("hello")
        emu.reply_tool_calls([("system_run", {"command": "ls /tmp"})])
        emu.reply_error(429, "slow down", retry_after=0)
        ...  # point the client at emu.openai_base_url / emu.anthropic_base_url
        assert emu.requests[0].json["model"] == "gpt-4o-mini"

Replies are served first in, first out; when none is queued the ``default_reply`` answers
(text "OK" unless configured), so a benchmark gets an instant LLM. Every request is
recorded in :attr:`LlmEmulator.requests`.

Run it standalone with ``python -m openpista_testing.emulator --port 0 [--reply TEXT]``: it
prints its base URL and serves until killed. starlette and uvicorn (the ``testing`` extra)
are imported only when a server starts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from openpista_testing.server import ThreadedServer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

Api = Literal["openai", "responses", "anthropic", "ollama"]
Arguments = dict[str, Any] | str
"""Tool-call arguments: a JSON object, or raw text sent as is (to emulate malformed JSON)."""

DEFAULT_MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class TextReply:
    """Answer with ``text``, streamed in pieces of ``chunk_size`` characters.

    ``fail_with`` (Responses API streams only) ends the stream after the text with a
    ``response.failed`` event carrying that message, as the API does when a response breaks
    off half way.
    """

    text: str
    usage: tuple[int, int] | None = None
    delay: float = 0.0
    chunk_size: int = 4
    fail_with: str | None = None
    unstreamed: bool = False
    """Answer a streaming request with the whole JSON body, as some compatible servers do."""


@dataclass(frozen=True)
class ToolCallsReply:
    """Ask for tool calls ``(wire_name, arguments)``, optionally after some ``text``."""

    calls: list[tuple[str, Arguments]]
    text: str = ""
    usage: tuple[int, int] | None = None
    delay: float = 0.0
    chunk_size: int = 8
    unstreamed: bool = False
    """As in :class:`TextReply`."""


@dataclass(frozen=True)
class ErrorReply:
    """Fail with HTTP ``status`` and the API's error body (or ``raw_body`` verbatim).

    ``error_type`` and ``code`` replace the body's ``error.type`` and ``error.code`` that
    the status implies (OpenAI format), e.g. ``insufficient_quota`` for both: the 429 the API
    answers when the account has no credit left.
    """

    status: int
    message: str = "error"
    retry_after: float | None = None
    raw_body: str | None = None
    delay: float = 0.0
    error_type: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class RawReply:
    """Answer with ``chunks`` verbatim (status 200), each sent as it is: malformed or unusual
    server-sent events, oversized lines, errors in the middle of a stream."""

    chunks: tuple[bytes, ...]
    media_type: str = "text/event-stream"
    delay: float = 0.0


Reply = TextReply | ToolCallsReply | ErrorReply | RawReply
ReplyFunction = Callable[[dict[str, Any]], "Reply | str"]
"""Gets the parsed request JSON, returns a reply (a plain string is a text reply)."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it (header names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    peer: str = ""
    """The client's ``host:port``: requests sent over one kept-alive connection share it."""


class LlmEmulator(ThreadedServer):
    """An OpenAI, Anthropic and Ollama compatible server on 127.0.0.1 in a background thread.

    ``api_key`` turns on the auth check (``Authorization: Bearer`` or ``x-api-key``);
    ``models`` is what ``GET /v1/models`` lists. ``base_url`` is the server root (the
    Anthropic ``api_base``).
    """

    name = "LLM emulator"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default_reply: Reply | str = "OK",
        models: tuple[str, ...] = ("gpt-4o-mini", "claude-3-5-haiku-latest"),
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.default_reply: Reply | ReplyFunction = _as_reply(default_reply)
        self.models = models
        self.max_body_bytes = max_body_bytes
        self.requests: list[RecordedRequest] = []
        self._queue: collections.deque[Reply | ReplyFunction] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.embeddings_error: ErrorReply | None = None
        """When set, every embeddings request gets this error (a provider that is down)."""

    # -- scripting -------------------------------------------------------------------------

    def reply(self, reply: Reply | ReplyFunction | str) -> None:
        """Queue a reply: a :data:`Reply`, a plain text, or a function of the request JSON."""
        with self._lock:
            self._queue.append(_as_reply(reply) if isinstance(reply, str) else reply)

    def reply_text(self, text: str, **options: Any) -> None:
        """Queue a text answer (options as in :class:`TextReply`)."""
        self.reply(TextReply(text, **options))

    def reply_tool_calls(self, calls: list[tuple[str, Arguments]], **options: Any) -> None:
        """Queue a tool-call answer (options as in :class:`ToolCallsReply`)."""
        self.reply(ToolCallsReply(list(calls), **options))

    def reply_error(self, status: int, message: str = "error", **options: Any) -> None:
        """Queue an error answer (options as in :class:`ErrorReply`)."""
        self.reply(ErrorReply(status, message, **options))

    @property
    def pending(self) -> int:
        """Replies queued and not served yet."""
        with self._lock:
            return len(self._queue)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else self.default_reply
        if callable(scripted):
            answer = scripted(body)
            return TextReply(answer) if isinstance(answer, str) else answer
        return scripted

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the OpenAI ``base_url``."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The server root: the Anthropic ``api_base``."""
        return self.base_url

    def stop(self) -> None:
        """Stop serving (waking replies that sleep) and wait for the thread to end."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        super().stop()
        self._loop = self._wake = None

    # -- HTTP ------------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        """The starlette application (for mounting it elsewhere)."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self._azure_chat_completions,
                    methods=["POST"],
                ),
                Route("/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/responses", self._responses, methods=["POST"]),
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/embeddings", self._embeddings, methods=["POST"]),
                Route("/models", self._models, methods=["GET"]),
                Route("/api/chat", self._ollama_chat, methods=["POST"]),
                Route("/api/tags", self._ollama_tags, methods=["GET"]),
            ]
        )

    async def _chat_completions(self, request: Request) -> Response:
        return await self._handle(request, "openai", ("model", "messages"))

    async def _azure_chat_completions(self, request: Request) -> Response:
        """Azure OpenAI: the deployment in the path, ``api-version`` required, ``api-key``."""
        if not request.query_params.get("api-version"):
            self._record(request, None)
            return _error_response("openai", 404, "Resource not found (no api-version given)")
        return await self._handle(request, "openai", ("messages", "messages"))

    async def _responses(self, request: Request) -> Response:
        return await self._handle(request, "responses", ("model", "input"))

    async def _messages(self, request: Request) -> Response:
        return await self._handle(request, "anthropic", ("model", "messages", "max_tokens"))

    async def _ollama_chat(self, request: Request) -> Response:
        return await self._handle(request, "ollama", ("model", "messages"))

    async def _ollama_tags(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        self._record(request, None)
        models = [{"name": m, "model": m, "size": 0, "digest": ""} for m in self.models]
        return JSONResponse({"models": models})

    async def _models(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        self._record(request, None)
        if not self._authorized(request):
            return _unauthorized(api)
        if api == "anthropic":
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2024-01-01T00:00:00Z"}
                for m in self.models
            ]
            first, last = (self.models[0], self.models[-1]) if self.models else (None, None)
            return JSONResponse(
                {"data": data, "has_more": False, "first_id": first, "last_id": last}
            )
        listing = [
            {"id": m, "object": "model", "created": 0, "owned_by": "emulator"} for m in self.models
        ]
        return JSONResponse({"object": "list", "data": listing})

    async def _embeddings(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        from openpista_testing.embeddings import embeddings_answer

        body, problem = await self._read_json(request)
        self._record(request, body)
        if problem is not None:
            return _error_response("openai", 400, problem)
        if not self._authorized(request):
            return _unauthorized("openai")
        failure = self.embeddings_error
        if failure is not None:
            return _error_response("openai", failure.status, failure.message)
        status, answer = embeddings_answer(body)
        if isinstance(answer, str):
            return _error_response("openai", status, answer)
        return JSONResponse(answer)

    async def _handle(self, request: Request, api: Api, required: tuple[str, ...]) -> Response:
        body, problem = await self._read_json(request)
        self._record(request, body)
        if problem is not None:
            return _error_response(api, 400, problem)
        if not self._authorized(request):
            return _unauthorized(api)
        assert isinstance(body, dict)
        missing = [key for key in required if key not in body]
        conversation = required[1]
        if missing or not isinstance(body.get(conversation), list | str):
            return _error_response(api, 400, f"{(missing or [conversation])[0]}: field required")
        try:
            reply = self._next_reply(body)
        except Exception as exc:  # a broken test callback must not kill the server
            return _error_response(api, 500, f"emulator reply function failed: {exc!r}")
        await self._sleep(reply.delay)
        if isinstance(reply, ErrorReply):
            return _error_response(api, reply.status, reply.message, reply.retry_after,
                                   reply.raw_body, reply.error_type, reply.code)  # fmt: skip
        if isinstance(reply, RawReply):
            from starlette.responses import StreamingResponse

            return StreamingResponse(_raw(reply.chunks), media_type=reply.media_type)
        answer = _Answer.build(reply, body, f"{next(self._ids):06d}")
        render = _FORMATS[api]
        # Ollama streams unless told otherwise; the others only when asked.
        if body.get("stream", api == "ollama") and not reply.unstreamed:
            from starlette.responses import StreamingResponse

            include_usage = api != "openai" or bool(
                (body.get("stream_options") or {}).get("include_usage")
            )
            events = render.stream(answer, include_usage)
            return StreamingResponse(_encode(events, api), media_type=_MEDIA_TYPES[api])
        from starlette.responses import JSONResponse

        return JSONResponse(render.whole(answer))

    async def _read_json(self, request: Request) -> tuple[Any, str | None]:
        size = 0
        chunks: list[bytes] = []
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, f"request body too large (over {self.max_body_bytes} bytes)"
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            return None, f"request body is not valid JSON: {exc}"
        if not isinstance(body, dict):
            return body, "request body must be a JSON object"
        return body, None

    def _record(self, request: Request, body: Any) -> None:
        headers = {key.lower(): value for key, value in request.headers.items()}
        peer = f"{request.client.host}:{request.client.port}" if request.client else ""
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.url.path, headers, body, peer)
            )

    def _authorized(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        bearer = request.headers.get("authorization", "")
        keys = (request.headers.get(h) for h in ("x-api-key", "api-key"))
        return self.api_key in (*keys, bearer.removeprefix("Bearer "))

    async def _sleep(self, delay: float) -> None:
        if delay <= 0:
            return
        # Wake early on stop(), so that a long scripted delay does not hold up shutdown.
        if self._wake is None:
            self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)


async def _raw(chunks: tuple[bytes, ...]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _as_reply(reply: Reply | ReplyFunction | str) -> Reply | ReplyFunction:
    return TextReply(reply) if isinstance(reply, str) else reply


# -- rendering: one neutral answer, two wire formats -------------------------------------------


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Answer:
    """A reply resolved for one request: ids assigned, arguments serialised, usage counted."""

    id: str
    model: str
    text: str
    calls: list[_Call]
    prompt_tokens: int
    completion_tokens: int
    chunk_size: int
    fail_with: str | None = None

    @classmethod
    def build(cls, reply: TextReply | ToolCallsReply, body: dict[str, Any], serial: str) -> _Answer:
        calls = []
        if isinstance(reply, ToolCallsReply):
            for n, (name, args) in enumerate(reply.calls):
                text = args if isinstance(args, str) else json.dumps(args)
                calls.append(_Call(f"call_{serial}_{n}", name, text))
        # Rough token counts (about four characters a token): enough to check plumbing.
        prompt = max(1, len(json.dumps(body.get("messages", body.get("input", [])))) // 4)
        completion = max(1, (len(reply.text) + sum(len(c.arguments) for c in calls)) // 4)
        if reply.usage is not None:
            prompt, completion = reply.usage
        return cls(
            serial,
            str(body.get("model", "")),
            reply.text,
            calls,
            prompt,
            completion,
            reply.chunk_size,
            reply.fail_with if isinstance(reply, TextReply) else None,
        )

    def pieces(self, text: str) -> list[str]:
        """``text`` cut into the fragments a stream delivers."""
        size = max(1, self.chunk_size)
        return [text[i : i + size] for i in range(0, len(text), size)]


SseEvent = tuple[str | None, dict[str, Any] | str]
"""An SSE event name (None for OpenAI's unnamed events) and its data."""


_MEDIA_TYPES = {
    "openai": "text/event-stream",
    "responses": "text/event-stream",
    "anthropic": "text/event-stream",
    "ollama": "application/x-ndjson",
}


async def _encode(events: Iterator[SseEvent], api: Api) -> AsyncIterator[bytes]:
    """Server-sent events, or for Ollama one JSON object a line."""
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        if api == "ollama":
            yield f"{payload}\n".encode()
        else:
            head = f"event: {name}\n" if name else ""
            yield f"{head}data: {payload}\n\n".encode()


class _OpenAIFormat:
    """``POST /v1/chat/completions``."""

    def whole(self, a: _Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": a.text or None}
        if a.calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in a.calls
            ]
        return {
            **self._head(a, "chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish(a)}],
            "usage": self._usage(a),
        }

    def stream(self, a: _Answer, include_usage: bool) -> Iterator[SseEvent]:
        yield None, self._chunk(a, {"role": "assistant", "content": ""})
        for piece in a.pieces(a.text):
            yield None, self._chunk(a, {"content": piece})
        for index, call in enumerate(a.calls):
            start = {"index": index, "id": call.id, "type": "function",
                     "function": {"name": call.name, "arguments": ""}}  # fmt: skip
            yield None, self._chunk(a, {"tool_calls": [start]})
            for piece in a.pieces(call.arguments):
                fragment = {"index": index, "function": {"arguments": piece}}
                yield None, self._chunk(a, {"tool_calls": [fragment]})
        yield None, self._chunk(a, {}, self._finish(a))
        if include_usage:
            yield (
                None,
                {**self._head(a, "chat.completion.chunk"), "choices": [], "usage": self._usage(a)},
            )
        yield None, "[DONE]"

    def _head(self, a: _Answer, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{a.id}",
            "object": kind,
            "created": int(time.time()),
            "model": a.model,
        }

    def _chunk(
        self, a: _Answer, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**self._head(a, "chat.completion.chunk"), "choices": [choice]}

    def _finish(self, a: _Answer) -> str:
        return "tool_calls" if a.calls else "stop"

    def _usage(self, a: _Answer) -> dict[str, int]:
        total = a.prompt_tokens + a.completion_tokens
        return {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
                "total_tokens": total}  # fmt: skip


class _ResponsesFormat:
    """``POST /v1/responses`` (OpenAI's Responses API)."""

    def whole(self, a: _Answer) -> dict[str, Any]:
        output = ([self._message(a, a.text)] if a.text else []) + [
            self._call(a, n, c, c.arguments) for n, c in enumerate(a.calls)
        ]
        return self._response(a, "completed", output, usage=True)

    def stream(self, a: _Answer, include_usage: bool) -> Iterator[SseEvent]:
        sequence = itertools.count()

        def event(kind: str, **data: Any) -> SseEvent:
            return kind, {"type": kind, "sequence_number": next(sequence), **data}

        yield event("response.created", response=self._response(a, "in_progress", []))
        yield event("response.in_progress", response=self._response(a, "in_progress", []))
        output: list[dict[str, Any]] = []
        if a.text:
            item_id = f"msg_{a.id}"
            where = {"item_id": item_id, "output_index": 0, "content_index": 0}
            started = {**self._message(a, ""), "status": "in_progress", "content": []}
            yield event("response.output_item.added", output_index=0, item=started)
            part = {"type": "output_text", "text": "", "annotations": []}
            yield event("response.content_part.added", part=part,
                        item_id=item_id, output_index=0, content_index=0)  # fmt: skip
            for piece in a.pieces(a.text):
                yield event("response.output_text.delta", delta=piece, **where)
            yield event("response.output_text.done", text=a.text, **where)
            yield event("response.content_part.done", part={**part, "text": a.text}, **where)
            if a.fail_with is not None:  # the response breaks off half way
                error = {"code": "server_error", "message": a.fail_with}
                failed = {**self._response(a, "failed", []), "error": error}
                yield event("response.failed", response=failed)
                return
            output.append(self._message(a, a.text))
            yield event("response.output_item.done", output_index=0, item=output[-1])
        for n, call in enumerate(a.calls):
            index = len(output)
            item = self._call(a, n, call, "")
            yield event("response.output_item.added", output_index=index,
                        item={**item, "status": "in_progress"})  # fmt: skip
            for piece in a.pieces(call.arguments):
                yield event("response.function_call_arguments.delta", item_id=item["id"],
                            output_index=index, delta=piece)  # fmt: skip
            yield event("response.function_call_arguments.done", item_id=item["id"],
                        output_index=index, arguments=call.arguments)  # fmt: skip
            output.append(self._call(a, n, call, call.arguments))
            yield event("response.output_item.done", output_index=index, item=output[-1])
        yield event("response.completed", response=self._response(a, "completed", output, True))

    def _response(
        self, a: _Answer, status: str, output: list[dict[str, Any]], usage: bool = False
    ) -> dict[str, Any]:
        counts = {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens,
                  "total_tokens": a.prompt_tokens + a.completion_tokens}  # fmt: skip
        return {"id": f"resp_{a.id}", "object": "response", "created_at": int(time.time()),
                "status": status, "model": a.model, "output": output,
                "usage": counts if usage else None}  # fmt: skip

    def _message(self, a: _Answer, text: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": []}]
        return {"type": "message", "id": f"msg_{a.id}", "status": "completed",
                "role": "assistant", "content": content}  # fmt: skip

    def _call(self, a: _Answer, n: int, call: _Call, arguments: str) -> dict[str, Any]:
        return {"type": "function_call", "id": f"fc_{a.id}_{n}", "call_id": call.id,
                "name": call.name, "arguments": arguments, "status": "completed"}  # fmt: skip


class _AnthropicFormat:
    """``POST /v1/messages``."""

    def whole(self, a: _Answer) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": a.text}] if a.text else []
        content += [{**self._tool_block(c), "input": _input(c.arguments)} for c in a.calls]
        return {
            **self._message(a),
            "content": content,
            "stop_reason": self._stop(a),
            "usage": {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens},
        }

    def stream(self, a: _Answer, include_usage: bool) -> Iterator[SseEvent]:
        start = {**self._message(a), "content": [], "stop_reason": None,
                 "usage": {"input_tokens": a.prompt_tokens, "output_tokens": 1}}  # fmt: skip
        yield "message_start", {"type": "message_start", "message": start}
        index = 0
        if a.text:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in a.pieces(a.text)]
            yield from self._block(index, block, deltas)
            index += 1
        yield "ping", {"type": "ping"}
        for call in a.calls:
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in a.pieces(call.arguments)
            ]
            yield from self._block(index, {**self._tool_block(call), "input": {}}, deltas)
            index += 1
        delta = {"stop_reason": self._stop(a), "stop_sequence": None}
        usage = {"output_tokens": a.completion_tokens}
        yield "message_delta", {"type": "message_delta", "delta": delta, "usage": usage}
        yield "message_stop", {"type": "message_stop"}

    def _block(
        self, index: int, block: dict[str, Any], deltas: list[dict[str, Any]]
    ) -> Iterator[SseEvent]:
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": block}  # fmt: skip
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": delta}  # fmt: skip
        yield "content_block_stop", {"type": "content_block_stop", "index": index}

    def _message(self, a: _Answer) -> dict[str, Any]:
        return {"id": f"msg_{a.id}", "type": "message", "role": "assistant", "model": a.model,
                "stop_sequence": None}  # fmt: skip

    def _tool_block(self, call: _Call) -> dict[str, Any]:
        return {"type": "tool_use", "id": call.id.replace("call_", "toolu_"), "name": call.name}

    def _stop(self, a: _Answer) -> str:
        return "tool_use" if a.calls else "end_turn"


def _input(arguments: str) -> Any:
    # The real API always sends an object; a malformed scripted value goes out as a string.
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


class _OllamaFormat:
    """``POST /api/chat`` (Ollama's native API); tool calls arrive whole, arguments as objects."""

    def whole(self, a: _Answer) -> dict[str, Any]:
        return self._line(a, a.text, a.calls, done=True)

    def stream(self, a: _Answer, include_usage: bool) -> Iterator[SseEvent]:
        for piece in a.pieces(a.text):
            yield None, self._line(a, piece, [], done=False)
        if a.calls:
            yield None, self._line(a, "", a.calls, done=False)
        yield None, self._line(a, "", [], done=True)

    def _line(self, a: _Answer, text: str, calls: list[_Call], *, done: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [
                {"function": {"name": c.name, "arguments": _input(c.arguments)}} for c in calls
            ]
        line = {"model": a.model, "created_at": "2024-01-01T00:00:00Z", "message": message}
        if not done:
            return {**line, "done": False}
        counts = {"prompt_eval_count": a.prompt_tokens, "eval_count": a.completion_tokens}
        return {**line, "done": True, "done_reason": "stop", **counts}


_FORMATS: dict[Api, _OpenAIFormat | _ResponsesFormat | _AnthropicFormat | _OllamaFormat] = {
    "openai": _OpenAIFormat(),
    "responses": _ResponsesFormat(),
    "anthropic": _AnthropicFormat(),
    "ollama": _OllamaFormat(),
}

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_response(
    api: Api,
    status: int,
    message: str,
    retry_after: float | None = None,
    raw_body: str | None = None,
    error_type: str | None = None,
    code: str | None = None,
) -> Response:
    """The documented error body of ``api`` for ``status`` (OpenAI's ``type`` and ``code``
    overridden by ``error_type`` and ``code``)."""
    from starlette.responses import JSONResponse, Response

    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    if raw_body is not None:
        return Response(raw_body, status_code=status, headers=headers, media_type="text/html")
    body: dict[str, Any]
    if api == "ollama":
        body = {"error": message}
    elif api == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        kind, default_code = _OPENAI_ERRORS.get(status, ("server_error", None))
        body = {"error": {"message": message, "type": error_type or kind, "param": None,
                          "code": code or default_code}}  # fmt: skip
    return JSONResponse(body, status_code=status, headers=headers)


def _unauthorized(api: Api) -> Response:
    message = "invalid x-api-key" if api == "anthropic" else "Incorrect API key provided"
    return _error_response(api, 401, message)


def main(argv: list[str] | None = None) -> None:
    """``python -m openpista_testing.emulator``: serve until killed, base URL on stdout."""
    parser = argparse.ArgumentParser(
        description="A local OpenAI/Anthropic-compatible LLM emulator."
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument("--reply", default="OK", help="text of every answer (default: OK)")
    parser.add_argument("--api-key", default=None, help="require this API key")
    args = parser.parse_args(argv)
    emulator = LlmEmulator(api_key=args.api_key, default_reply=args.reply, port=args.port)
    with emulator:
        print(emulator.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
