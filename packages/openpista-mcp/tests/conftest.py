"""Real MCP servers for the tests: the demo server over stdio and over streamable HTTP."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .oauth_server import ApprovingProvider, build_oauth_server

DEMO = Path(__file__).with_name("mcp_demo_server.py")
BROWSER = Path(__file__).with_name("browser.py")
TOKEN = "demo-token-8472"


def stdio_server(*args: str, **options: Any) -> dict[str, Any]:
    """A ``[mcp.servers.NAME]`` table running the demo server (``args`` pick its mode)."""
    return {"command": sys.executable, "args": [str(DEMO), *args], **options}


def _demo_module() -> Any:
    spec = importlib.util.spec_from_file_location("mcp_demo_server", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HttpServer:
    """The demo server's streamable-HTTP (or SSE) app under uvicorn on 127.0.0.1, in a thread;
    requests without ``Authorization: Bearer TOKEN`` get 401."""

    def __init__(self, kind: str = "http") -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.url = f"{base}/sse" if kind == "sse" else f"{base}/mcp"
        self.authorizations: list[str | None] = []
        self.oauth = ApprovingProvider()
        if kind == "oauth":  # the SDK's own authorization server guards it
            app = build_oauth_server(base, self.oauth).streamable_http_app()
        else:
            demo = _demo_module().build_server()
            app = self._guard(demo.streamable_http_app() if kind == "http" else demo.sse_app())
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def _guard(self, app: Any) -> Any:
        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                value = headers.get(b"authorization")
                self.authorizations.append(value.decode() if value else None)
                if value != f"Bearer {TOKEN}".encode():
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await app(scope, receive, send)

        return guarded

    def __enter__(self) -> HttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(autouse=True)
def openpista_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the servers' stderr logs go (``$OPENPISTA_HOME/mcp/NAME.log``)."""
    home = tmp_path / "openpista-home"
    monkeypatch.setenv("OPENPISTA_HOME", str(home))
    return home


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """The demo server over streamable HTTP."""
    with HttpServer() as server:
        yield server


@pytest.fixture
def oauth_server() -> Iterator[HttpServer]:
    """A server whose tools need an OAuth sign-in (at ``url``)."""
    with HttpServer("oauth") as server:
        yield server


@pytest.fixture
def sse_server() -> Iterator[HttpServer]:
    """The demo server over the legacy HTTP+SSE transport."""
    with HttpServer("sse") as server:
        yield server
