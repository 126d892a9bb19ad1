"""uvicorn embedded in the event loop: start, serve, stop, clear errors."""

from __future__ import annotations

import asyncio
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from openpista.serving import BodyTooLargeError, EmbeddedServer, bind_tcp, bind_unix, read_body


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", hello)])


async def test_serves_until_stopped_and_leaves_signals_to_the_daemon() -> None:
    before = signal.getsignal(signal.SIGTERM)
    server = EmbeddedServer(APP, name="test server")
    await server.start(bind_tcp("127.0.0.1", 0))
    assert server.port > 0
    assert signal.getsignal(signal.SIGTERM) == before
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/")
    assert response.text == "hello"
    waiting = asyncio.create_task(server.wait_closed())
    await server.stop()
    await asyncio.wait_for(waiting, 10)  # a stop is not an error
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{server.port or 1}/")


async def test_a_server_that_dies_is_reported_by_wait_closed() -> None:
    server = EmbeddedServer(APP, name="test server")
    await server.start(bind_tcp("127.0.0.1", 0))
    server._server.should_exit = True  # uvicorn ends without stop(): a crash for the gateway
    with pytest.raises(RuntimeError, match="test server stopped unexpectedly"):
        await asyncio.wait_for(server.wait_closed(), 10)
    await server.stop()


def test_a_port_in_use_names_the_option_to_change() -> None:
    taken = bind_tcp("127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*change web\.port"):
            bind_tcp("127.0.0.1", taken.getsockname()[1], option="web.port")
    finally:
        taken.close()


async def test_a_server_that_cannot_start_says_so() -> None:
    server = EmbeddedServer(APP, name="tls server", ssl_certfile="/nonexistent/cert.pem")
    with pytest.raises(RuntimeError, match="tls server could not start"):
        await server.start(bind_tcp("127.0.0.1", 0))
    assert server.socket is None


async def test_serves_on_a_unix_socket_with_the_mode_asked(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    path.write_text("stale")  # a file left by a crash is replaced
    server = EmbeddedServer(APP, name="unix server")
    await server.start(bind_unix(path, mode=0o660))
    try:
        assert server.port == 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get("http://worker/")).text == "hello"
    finally:
        await server.stop()


async def test_a_listening_server_announces_its_bound_address(tmp_path: Path) -> None:
    from openpista.serving import Listener, listeners

    tcp = EmbeddedServer(APP, name="tcp server")
    await tcp.start(bind_tcp("127.0.0.1", 0))
    unix = EmbeddedServer(APP, name="unix server")
    await unix.start(bind_unix(tmp_path / "s.sock"))
    v6 = EmbeddedServer(APP, name="v6 server")
    await v6.start(bind_tcp("::1", 0))
    try:
        assert listeners() == [
            Listener("tcp server", f"http://127.0.0.1:{tcp.port}"),
            Listener("unix server", f"unix:{tmp_path / 's.sock'}"),
            Listener("v6 server", f"http://[::1]:{v6.port}"),
        ]
    finally:
        await tcp.stop()
        await unix.stop()
    assert listeners() == [Listener("v6 server", f"http://[::1]:{v6.port}")]
    await v6.stop()
    assert listeners() == []


async def test_read_body_never_holds_more_than_its_limit() -> None:
    """A declared or streamed body over the limit is refused; chunked bodies count too."""
    seen: list[int] = []

    async def echo(request: Request) -> PlainTextResponse:
        try:
            body = await read_body(request, 10)
        except BodyTooLargeError as exc:
            return PlainTextResponse(str(exc), status_code=413)
        seen.append(len(body))
        return PlainTextResponse(body.decode())

    server = EmbeddedServer(Starlette(routes=[Route("/", echo, methods=["POST"])]), name="t")
    await server.start(bind_tcp("127.0.0.1", 0))

    async def chunks(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"abcd"

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.post("/", content=b"0123456789")).text == "0123456789"
            declared = await client.post("/", content=b"x" * 11)
            assert (declared.status_code, declared.text) == (413, "body larger than 10 bytes")
            streamed = await client.post("/", content=chunks(3))  # no Content-Length
            assert streamed.status_code == 413
            exact = await client.post("/", content=chunks(2), headers={"content-length": "8"})
            assert exact.text == "abcdabcd"
        assert seen == [10, 8]
    finally:
        await server.stop()
