"""The httpx path for OpenAI-compatible chat completions: hostile streams, the ``client``
choice, connection reuse and closing, and that litellm and the openai SDK stay unimported.

Answers, tool calls, usage and every error class are checked on both paths by
test_providers.py; this file covers what only the httpx path does itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pluggy
import pytest
from pydantic import SecretStr

import openpista.builtins.providers
import openpista.hookspecs
from openpista.config import AgentSettings, ProviderSettings, Settings
from openpista.models import Message
from openpista.providers import http_pool
from openpista.providers.base import ChatResult, ProviderError, TextDelta, ToolSpec
from openpista.providers.http_base import MAX_EVENT_BYTES
from openpista.providers.http_pool import LeanConnectionPool, LeanTransport
from openpista.providers.litellm_provider import LiteLLMProvider
from openpista.providers.openai_chat import HttpChatProvider
from openpista.providers.registry import ProviderRegistry
from openpista.providers.responses import ResponsesProvider
from openpista_testing.emulator import LlmEmulator, RawReply
from openpista_testing.tls import self_signed

KEY = "sk-test-secret-0123456789"
HI = [Message(role="user", content="hi")]
RUN = ToolSpec(name="system.run", description="Run a shell command.")


def registry() -> ProviderRegistry:
    pm = pluggy.PluginManager("openpista")
    pm.add_hookspecs(openpista.hookspecs)
    pm.register(openpista.builtins.providers)
    return ProviderRegistry.from_plugins(pm)


def build(emu: LlmEmulator, name: str = "openai", **options: Any) -> Any:
    section = ProviderSettings.model_validate(
        {"base_url": emu.openai_base_url, "api_key": KEY, "max_retries": 0, "timeout": 10} | options
    )
    settings = Settings(agent=AgentSettings(provider=name), providers={name: section})
    return registry().build(settings)


def sse(*events: Any, done: bool = True) -> tuple[bytes, ...]:
    """Chunks of an OpenAI chat completion stream, one event each."""
    lines = [f"data: {json.dumps(e) if not isinstance(e, str) else e}\n\n" for e in events]
    return tuple(line.encode() for line in lines + (["data: [DONE]\n\n"] if done else []))


def delta(**fields: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": fields}],
    }


async def stream_text(provider: Any) -> tuple[str, ChatResult]:
    events = [e async for e in provider.stream(HI, [RUN])]
    assert isinstance(events[-1], ChatResult)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


async def stream_error(provider: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await stream_text(provider)
    assert KEY not in str(caught.value)
    return caught.value


# -- what carries the requests ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["openai", "together", "openrouter", "custom", "github_copilot"])
def test_auto_serves_openai_compatible_presets_over_http(name: str) -> None:
    with LlmEmulator() as emu:
        assert isinstance(build(emu, name), HttpChatProvider)
        assert type(build(emu, name, client="litellm")) is LiteLLMProvider


@pytest.mark.parametrize("name", ["ollama", "gemini", "azure", "bedrock"])
def test_other_apis_stay_on_litellm(name: str) -> None:
    with LlmEmulator() as emu:
        assert type(build(emu, name)) is LiteLLMProvider
        with pytest.raises(ProviderError) as caught:
            build(emu, name, client="http")
    assert caught.value.kind == "config"
    assert f'[providers.{name}] client = "http" serves OpenAI-compatible' in str(caught.value)
    assert 'client = "litellm"' in str(caught.value)


def test_the_responses_api_stays_on_litellm() -> None:
    with LlmEmulator() as emu:
        assert isinstance(build(emu, api="responses"), ResponsesProvider)
        with pytest.raises(ProviderError) as caught:
            build(emu, api="responses", client="http")
    assert "the Responses API is neither" in str(caught.value)


@pytest.mark.parametrize("preset", ["openai", "anthropic"])
def test_the_http_path_imports_neither_litellm_nor_an_sdk(preset: str) -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        from openpista.config import AgentSettings, ProviderSettings, Settings
        from openpista.models import Message
        from openpista.runtime import build_providers
        from openpista.plugins import PluginHost
        from openpista_testing.emulator import LlmEmulator

        async def main(emu, preset):
            base_url = getattr(emu, f"{preset}_base_url")
            section = ProviderSettings(base_url=base_url, api_key="k")
            settings = Settings(agent=AgentSettings(provider=preset), providers={preset: section})
            providers = build_providers(PluginHost.load(entry_points=False))
            provider = providers.build(settings)
            events = [e async for e in provider.stream([Message(role="user", content="hi")], [])]
            assert events[-1].text == "lean", events
            await providers.aclose()

        with LlmEmulator(default_reply="lean") as emu:
            asyncio.run(main(emu, sys.argv[1]))
        heavy = ("litellm", "openai", "anthropic", "tiktoken", "tokenizers")
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code, preset], check=True, timeout=120)


# -- one connection pool per provider ---------------------------------------------------------


async def test_requests_reuse_one_connection_and_close_ends_it(llm_emulator: LlmEmulator) -> None:
    provider = build(llm_emulator)
    for _ in range(3):
        await stream_text(provider)
        await provider.complete(HI, [])
    peers = {request.peer for request in llm_emulator.requests}
    assert len(peers) == 1, peers
    await provider.aclose()
    await provider.complete(HI, [])
    assert llm_emulator.requests[-1].peer not in peers, "a closed pool opens a new connection"
    await provider.aclose()


async def test_closing_during_a_stream_lets_it_finish(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("a long answer in many pieces", chunk_size=2)
    provider = build(llm_emulator)
    stream = provider.stream(HI, [])
    first = await anext(stream)
    await provider.aclose()  # as the runtime does at shutdown, or an OAuth refresh
    rest = [event async for event in stream]
    assert isinstance(first, TextDelta)
    assert first.text + "".join(e.text for e in rest if isinstance(e, TextDelta)) == (
        "a long answer in many pieces"
    )
    assert provider._client is None, "closed once the stream ended"


class CountingPool(LeanConnectionPool):
    """The lean pool, counting the expiry checks it makes (each costs two system calls) and
    its passes over the pool."""

    checks = 0
    passes = 0

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        CountingPool.passes += 1
        return super()._assign_requests_to_connections()

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        connection = super().create_connection(origin)
        has_expired = connection.has_expired

        def counted() -> bool:
            CountingPool.checks += 1
            return has_expired()

        connection.has_expired = counted  # type: ignore[method-assign]
        return connection


def pooled_client(limits: httpx.Limits, pool: type[LeanConnectionPool] = LeanConnectionPool) -> Any:
    transport = LeanTransport(limits)
    assert isinstance(transport._pool, LeanConnectionPool), "httpx no longer keeps it in _pool"
    transport._pool.__class__ = pool
    return httpx.AsyncClient(transport=transport), transport._pool


async def open_at_once(client: httpx.AsyncClient, url: str, count: int) -> list[httpx.Response]:
    """``count`` requests in flight together (their bodies not read): one connection each."""
    return await asyncio.gather(
        *(client.send(client.build_request("GET", url), stream=True) for _ in range(count))
    )


async def test_the_provider_pool_is_the_lean_one(llm_emulator: LlmEmulator) -> None:
    provider = build(llm_emulator)
    await provider.complete(HI, [])
    assert isinstance(provider._client._transport._pool, LeanConnectionPool)
    await provider.aclose()


@contextlib.asynccontextmanager
async def tls_server(cert: Path, key: Path) -> AsyncIterator[str]:
    """An HTTPS server on 127.0.0.1 answering every request ``ok``; yields its URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_the_tls_context_is_built_for_the_first_https_connection(
    llm_emulator: LlmEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    async with tls_server(cert, key) as url:
        client, pool = pooled_client(httpx.Limits())
        async with client:
            await client.get(f"{llm_emulator.openai_base_url}/models")
            assert pool._ssl_context is None, "a plain-http provider loads no CA bundle"
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(url)  # a certificate no CA vouches for: still refused
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx's context trusts it now
        client, pool = pooled_client(httpx.Limits())
        async with client:
            assert (await client.get(url)).text == "ok"
            context = pool._ssl_context
            assert context is not None
            assert (await client.get(url)).text == "ok"
            assert pool._ssl_context is context, "built once"


async def test_a_request_checks_one_pooled_connection_not_all(
    llm_emulator: LlmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_pool, "SWEEP_SECONDS", 3600.0)
    client, pool = pooled_client(httpx.Limits(max_connections=100), CountingPool)
    url = f"{llm_emulator.openai_base_url}/models"
    async with client:
        for response in await open_at_once(client, url, 30):
            await response.aread()
            await response.aclose()
        assert len(pool.connections) == 30
        CountingPool.checks = 0
        for _ in range(5):
            assert (await client.get(url)).status_code == 200
        # httpcore's own pool checked all 30 at every request start and end (300 checks).
        assert CountingPool.checks == 5, CountingPool.checks
        assert len({r.peer for r in llm_emulator.requests[-5:]}) == 1, "one connection reused"


async def test_requests_at_once_share_no_connection(llm_emulator: LlmEmulator) -> None:
    client, _ = pooled_client(httpx.Limits(max_connections=100), CountingPool)
    url = f"{llm_emulator.openai_base_url}/models"
    async with client:
        for response in await open_at_once(client, url, 30):
            await response.aread()
            await response.aclose()
        opened = {r.peer for r in llm_emulator.requests}
        CountingPool.passes = 0
        await asyncio.gather(*(client.get(url) for _ in range(30)))
        # httpcore's own pool gave most of them the same idle connection: 9 connections
        # served the 30, the others retried, 175 passes over the pool.
        assert {r.peer for r in llm_emulator.requests[30:]} == opened
        assert CountingPool.passes == 60, "one as each request starts, one as it ends"


async def test_an_expired_connection_is_not_reused(
    llm_emulator: LlmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_pool, "SWEEP_SECONDS", 3600.0)  # caught when picked, not by a sweep
    client, pool = pooled_client(httpx.Limits(keepalive_expiry=0.05))
    url = f"{llm_emulator.openai_base_url}/models"
    async with client:
        await client.get(url)
        first = pool.connections[0]
        await asyncio.sleep(0.2)
        await client.get(url)
        assert first.is_closed()
        assert first not in pool.connections
        assert llm_emulator.requests[0].peer != llm_emulator.requests[1].peer


async def test_a_sweep_closes_expired_idle_connections(
    llm_emulator: LlmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, pool = pooled_client(httpx.Limits(keepalive_expiry=0.05))
    url = f"{llm_emulator.openai_base_url}/models"
    async with client:
        responses = await open_at_once(client, url, 3)
        for response in responses:
            await response.aread()
            await response.aclose()
        idle = pool.connections
        await asyncio.sleep(0.2)
        monkeypatch.setattr(http_pool, "SWEEP_SECONDS", 0.0)
        await client.get(url)
        assert all(c.is_closed() for c in idle)
        assert len(pool.connections) == 1


async def test_the_keepalive_limit_counts_idle_connections_only(
    llm_emulator: LlmEmulator,
) -> None:
    client, pool = pooled_client(httpx.Limits(max_connections=10, max_keepalive_connections=3))
    url = f"{llm_emulator.openai_base_url}/models"
    async with client:
        responses = await open_at_once(client, url, 6)
        for response in responses[:3]:
            await response.aread()
            await response.aclose()
        # httpcore's own pool counts the busy ones too: it closed these three at once.
        assert len(pool.connections) == 6
        for response in responses[3:]:
            await response.aread()
            await response.aclose()
        assert len(pool.connections) == 3
        assert all(c.is_idle() for c in pool.connections)


async def test_requests_past_max_connections_wait_their_turn(llm_emulator: LlmEmulator) -> None:
    client, pool = pooled_client(httpx.Limits(max_connections=2))
    url = f"{llm_emulator.openai_base_url}/models"
    async with client:
        answers = await asyncio.gather(*(client.get(url) for _ in range(8)))
        assert [a.status_code for a in answers] == [200] * 8
        assert len({r.peer for r in llm_emulator.requests}) <= 2
        assert len(pool.connections) <= 2


# -- server-sent events as servers really send them, and hostile ones ---------------------------


async def test_sse_framing_variants(llm_emulator: LlmEmulator) -> None:
    chunks = (
        b": keep-alive comment\r\n\r\n",
        b"event: message\r\nid: 1\r\ndata: " + json.dumps(delta(content="Hel")).encode(),
        b"\r\n\r\nretry: 10\n",  # an event split across chunks, CRLF line ends
        b"data:" + json.dumps(delta(content="lo")).encode() + b"\n\n",  # no space after colon
        b'data: {"id": "c1", "choices": [{"index": 0,\ndata: "delta": {"content": "!"}}]}\n\n',
        b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n',
        b"data: [DONE]\n\n",
        b"data: " + json.dumps(delta(content="after done")).encode() + b"\n\n",
    )
    llm_emulator.reply(RawReply(chunks))
    text, result = await stream_text(build(llm_emulator))
    assert text == result.text == "Hello!"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 2)


async def test_a_stream_without_done_and_without_a_final_blank_line(
    llm_emulator: LlmEmulator,
) -> None:
    last = b"data: " + json.dumps(delta(content=" end")).encode()
    llm_emulator.reply(RawReply((*sse(delta(content="the"), done=False), last)))
    text, _ = await stream_text(build(llm_emulator))
    assert text == "the end"


async def test_tool_calls_streamed_in_pieces_with_invalid_json(llm_emulator: LlmEmulator) -> None:
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "system_run"}}
    pieces = [{"index": 0, "function": {"arguments": p}} for p in ('{"comm', 'and": "ls', " -l")]
    hostile = {"index": "x", "id": 7, "function": {"name": ["bad"], "arguments": 5}}
    llm_emulator.reply(
        RawReply(sse(delta(tool_calls=[start]), *(delta(tool_calls=[p]) for p in pieces), hostile))
    )
    _, result = await stream_text(build(llm_emulator))
    [call] = result.tool_calls
    assert (call.id, call.name) == ("call_1", "system.run")
    assert call.raw_arguments == '{"command": "ls -l', "malformed arguments are kept raw"


@pytest.mark.parametrize(
    "chunks",
    [
        (b"data: {not json}\n\n",),
        (b"data: [1, 2]\n\n",),
        (b'data: {"choices": [{"delta": {"content": "x"}}]' + b"]" * 10 + b"\n\n",),
        (b"data: " + b"[" * 100_000 + b"\n\n",),
    ],
    ids=["not-json", "not-an-object", "trailing-garbage", "deeply-nested"],
)
async def test_malformed_chunks_are_one_clear_error(
    llm_emulator: LlmEmulator, chunks: tuple[bytes, ...]
) -> None:
    llm_emulator.reply(RawReply(chunks))
    error = await stream_error(build(llm_emulator))
    assert error.kind == "other"
    assert str(error).startswith("openai sent a malformed stream (")
    assert "[providers.openai] base_url" in str(error)


async def test_an_oversized_line_is_refused_not_buffered(llm_emulator: LlmEmulator) -> None:
    block = b"x" * (1024 * 1024)
    llm_emulator.reply(
        RawReply((b"data: ", *(block for _ in range(MAX_EVENT_BYTES // len(block) + 2))))
    )
    error = await stream_error(build(llm_emulator))
    assert f"a line is longer than {MAX_EVENT_BYTES} bytes" in str(error)


async def test_an_error_sent_mid_stream(llm_emulator: LlmEmulator) -> None:
    error_chunk = {"error": {"message": "upstream model crashed", "code": 502}}
    llm_emulator.reply(RawReply(sse(delta(content="par"), error_chunk)))
    error = await stream_error(build(llm_emulator))
    assert (error.kind, error.status) == ("other", 502)
    assert str(error) == "openai failed (HTTP 502): upstream model crashed"


@pytest.mark.parametrize("status", [502, 504])
async def test_an_html_gateway_error(llm_emulator: LlmEmulator, status: int) -> None:
    page = f"<html><head><title>{status} Bad Gateway</title></head><body>nginx</body></html>"
    llm_emulator.reply_error(status, raw_body=page)
    error = await stream_error(build(llm_emulator, max_retries=3))
    assert (error.kind, error.status) == ("other", status)
    assert str(error).startswith(f"openai failed (HTTP {status}): <html>")
    assert len(llm_emulator.requests) == 1, "only rate limits are retried"


async def test_a_json_body_that_is_not_a_completion(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(
        RawReply((b'{"object": "list", "data": []}',), media_type="application/json")
    )
    error = await stream_error(build(llm_emulator))
    assert "answered the streaming request with a JSON body that is not a chat completion" in str(
        error
    )


async def test_a_server_that_sends_no_event_at_all(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(RawReply((b"<html>captive portal</html>",), media_type="text/html"))
    error = await stream_error(build(llm_emulator))
    assert error.kind == "empty"


async def test_the_oauth_token_is_sent_and_a_stored_key_is_not_leaked(
    llm_emulator: LlmEmulator,
) -> None:
    provider = build(llm_emulator, "github_copilot", api_key=SecretStr("tok-1"))
    await provider.complete(HI, [])
    headers = llm_emulator.requests[-1].headers
    assert headers["authorization"] == "Bearer tok-1"
    assert headers["copilot-integration-id"] == "vscode-chat"
    assert llm_emulator.requests[-1].path == "/v1/chat/completions"


def test_the_backoff_doubles_up_to_a_ceiling_and_honours_retry_after() -> None:
    from openpista.providers.http_base import HttpStatusError
    from openpista.providers.litellm_provider import MAX_BACKOFF, _backoff

    plain = HttpStatusError(httpx.Response(429))
    assert [_backoff(plain, 0.5, attempt) for attempt in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert _backoff(plain, 0.5, 20) == MAX_BACKOFF
    assert _backoff(plain, 0.5, 5000) == MAX_BACKOFF  # 2.0**5000 overflows
    asked = HttpStatusError(httpx.Response(429, headers={"retry-after": "3"}))
    assert _backoff(asked, 0.5, 0) == 3.0
    greedy = HttpStatusError(httpx.Response(429, headers={"retry-after": "86400"}))
    assert _backoff(greedy, 0.5, 0) == MAX_BACKOFF


@contextlib.asynccontextmanager
async def closing_server(closes: Any) -> AsyncIterator[tuple[str, list[int]]]:
    """An OpenAI-compatible server on 127.0.0.1 that answers ``fine``, except that it
    closes the connection without an answer when ``closes(connection, its requests so
    far)`` says so; yields its base URL and the connection number of each request."""
    body = b"".join(sse(delta(content="fine"), {"choices": [], "usage": None}))
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    answer += b"content-length: %d\r\n\r\n%s" % (len(body), body)
    requests: list[int] = []
    opened = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal opened
        opened += 1
        connection = opened
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(
                    line.split(b":", 1) for line in head.lower().split(b"\r\n") if b":" in line
                )
                await reader.readexactly(int(fields[b"content-length"]))
                requests.append(connection)
                if closes(connection, requests.count(connection)):
                    break
                writer.write(answer)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", requests


def provider_at(url: str) -> Any:
    section = ProviderSettings.model_validate(
        {"base_url": url, "api_key": KEY, "max_retries": 0, "timeout": 10}
    )
    settings = Settings(agent=AgentSettings(provider="openai"), providers={"openai": section})
    return registry().build(settings)


async def test_a_kept_alive_connection_closed_as_a_request_goes_out_is_retried_once() -> None:
    # The race of every keep-alive client: the server closes an idle connection just as
    # the next request is written on it (uvicorn at its 5 s keep-alive): "disconnected
    # without sending a response". The request goes again, once, on a new connection.
    async with closing_server(lambda connection, n: connection == 1 and n == 2) as (url, seen):
        provider = provider_at(url)
        try:
            assert (await stream_text(provider))[0] == "fine"
            assert (await stream_text(provider))[0] == "fine"
        finally:
            await provider.aclose()
    assert seen == [1, 1, 2]


async def test_a_server_that_always_hangs_up_is_asked_twice_then_one_error() -> None:
    async with closing_server(lambda connection, n: True) as (url, seen):
        provider = provider_at(url)
        try:
            error = await stream_error(provider)
        finally:
            await provider.aclose()
    assert seen == [1, 2]
    assert "disconnected without sending a response" in str(error)
