"""Helpers for tests and benchmarks of the web channel: a client speaking its protocol.

Uses the ``websockets`` client (a dependency of this package, through uvicorn's server).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from openpista_web.auth import SUBPROTOCOL, TOKEN_PREFIX

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright drives it, never a downloaded browser
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def open_socket(
    port: int,
    client: str,
    token: str | None,
    *,
    query: str = "",
    origin: str | None = None,
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> Any:
    """``async with open_socket(...) as ws``: a connection to ``/ws`` as a browser makes it
    (``wss://`` trusting ``tls`` when given)."""
    protocols = [Subprotocol(SUBPROTOCOL)]
    if token is not None:
        protocols.append(Subprotocol(TOKEN_PREFIX + token))
    scheme = "wss" if tls is not None else "ws"
    return connect(
        f"{scheme}://{host}:{port}/ws?client={client}{query}",
        ssl=tls,
        subprotocols=protocols,
        origin=Origin(origin) if origin else None,
        max_size=None,
        open_timeout=10,
    )


async def next_frame(ws: ClientConnection, kind: str | None = None, wait: float = 10) -> Any:
    """The next frame (the next of type ``kind``, skipping others) as a dict; waits at most
    ``wait`` seconds for each."""
    while True:
        data = json.loads(await asyncio.wait_for(ws.recv(), wait))
        if kind is None or data["type"] == kind:
            return data


async def greeted(ws: ClientConnection, wait: float = 10) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``hello`` and ``history`` frames that open a fresh connection."""
    return await next_frame(ws, "hello", wait), await next_frame(ws, "history", wait)
