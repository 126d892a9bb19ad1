"""WSS served directly by uvicorn with the configured certificate and key."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from openpista_testing.tls import self_signed
from openpista_web.testing import greeted, open_socket

TOKEN = "test-token-Zq8vN3kL0pXr"  # the token of conftest's adapters


async def test_the_client_and_its_socket_are_served_over_tls(
    serve_web: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    served = await serve_web(tls_cert=str(cert), tls_key=str(key))
    assert served.adapter.url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(verify=trust) as client:
        page = await client.get(served.adapter.url)
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    async with open_socket(served.adapter.port, "tls-client", TOKEN, tls=trust) as ws:
        hello, _ = await greeted(ws)
    assert hello["type"] == "hello"
    async with httpx.AsyncClient() as plain:
        try:
            answer = await plain.get(served.adapter.url.replace("https", "http"))
        except httpx.HTTPError:
            return  # refused: no plain HTTP on a TLS port
    assert answer.status_code >= 400, "no plain HTTP on a TLS port"
