"""Browser clients and their connections: numbered frames, a backlog, resume after reconnect.

Every frame sent to a client gets the next sequence number of that client and is kept in a
bounded backlog. A browser that reconnects says which ``seq`` it saw last (and the server
``epoch`` it saw it from); the frames it missed are sent again, in order. A client may have
several connections (tabs); every frame goes to each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from openpista_web.protocol import encode

log = logging.getLogger(__name__)

BACKLOG = 1024  # frames kept per client for resuming (stream deltas are frames too)
FORGET_AFTER = 3600.0  # seconds a client without connections is remembered
SEND_TIMEOUT = 10.0  # a connection that cannot take a frame this long is closed


class Connection(Protocol):
    """What the hub needs of a WebSocket (starlette's ``WebSocket`` fits)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass
class Client:
    """One browser (its ``client_id`` lives in the browser's localStorage)."""

    id: str
    connections: set[Connection] = field(default_factory=set)
    seq: int = 0
    backlog: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=BACKLOG))
    last_seen: float = field(default_factory=time.monotonic)


class ClientHub:
    """The clients this server knows, keyed by client id."""

    def __init__(self, backlog: int = BACKLOG, forget_after: float = FORGET_AFTER) -> None:
        self.epoch = secrets.token_hex(4)  # a restarted server has another epoch: no replay
        self.backlog = backlog
        self.forget_after = forget_after
        self.clients: dict[str, Client] = {}

    def attach(self, client_id: str, connection: Connection) -> Client:
        """Register a new connection of ``client_id``."""
        self._forget_idle()
        client = self.clients.get(client_id)
        if client is None:
            client = Client(client_id, backlog=deque(maxlen=self.backlog))
            self.clients[client_id] = client
        client.connections.add(connection)
        client.last_seen = time.monotonic()
        return client

    def detach(self, client_id: str, connection: Connection) -> None:
        """Forget a closed connection (the client and its backlog stay for a while)."""
        client = self.clients.get(client_id)
        if client is not None:
            client.connections.discard(connection)
            client.last_seen = time.monotonic()

    def missed(self, client: Client, epoch: str | None, since: int) -> list[str] | None:
        """Frames after ``since`` for a client resuming from ``epoch``; ``None`` when they
        cannot be replayed (another server run, or older than the backlog)."""
        if epoch != self.epoch or since > client.seq:
            return None
        if since == client.seq:
            return []
        oldest = client.backlog[0][0] if client.backlog else client.seq + 1
        if oldest > since + 1:
            return None  # some were pushed out of the backlog
        return [frame for seq, frame in client.backlog if seq > since]

    async def publish(self, client_id: str, kind: str, **fields: Any) -> int:
        """Number, keep and send a frame to every connection of ``client_id``."""
        client = self.clients.get(client_id)
        if client is None:
            client = self.attach_offline(client_id)
        client.seq += 1
        frame = encode(kind, seq=client.seq, **fields)
        client.backlog.append((client.seq, frame))
        for connection in list(client.connections):
            await self.send(client, connection, frame)
        return client.seq

    def attach_offline(self, client_id: str) -> Client:
        """The record of a client with no connection (frames for it wait in its backlog)."""
        client = Client(client_id, backlog=deque(maxlen=self.backlog))
        self.clients[client_id] = client
        return client

    async def send(self, client: Client, connection: Connection, frame: str) -> None:
        """Send one frame; a connection that fails or stalls is closed and dropped."""
        try:
            await asyncio.wait_for(connection.send_text(frame), SEND_TIMEOUT)
        except Exception as exc:
            log.info("web client %s: dropping a connection (%s)", client.id, type(exc).__name__)
            client.connections.discard(connection)
            with contextlib.suppress(Exception):
                await connection.close(1011)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for client_id, client in list(self.clients.items()):
            if not client.connections and now - client.last_seen > self.forget_after:
                del self.clients[client_id]
