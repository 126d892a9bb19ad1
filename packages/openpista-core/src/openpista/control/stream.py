"""An asyncio client of the control socket, for clients that do several things at once
(the TUI: a turn streams while the user runs chat commands).

Requests carry a ``ref`` that the daemon copies into its reply, so :meth:`request` waits
for its own answer while the frames of a turn (``outbound``, ``cancelled``) and unsolicited
errors go to the ``on_frame`` callback. Stdlib only, like :mod:`openpista.control.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from typing import Any

from openpista.control.client import GONE, DaemonError, DaemonGoneError
from openpista.control.protocol import HEADER, Frame, ProtocolError, body_length, decode, encode


class StreamClient:
    """One connection to the daemon, read by a background task; :attr:`on_frame` gets
    every frame that answers no request, then ``None`` once the connection has ended."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.on_frame: Callable[[Frame | None], None] = lambda frame: None
        self._refs = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Frame]] = {}
        self._task = asyncio.get_running_loop().create_task(self._read_all())

    @classmethod
    async def over(cls, sock: socket.socket) -> StreamClient:
        """A client on ``sock``, a connected socket (e.g. a
        :class:`~openpista.control.client.ControlClient`'s)."""
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    @property
    def connected(self) -> bool:
        return not self._task.done()

    async def send(self, frame: Frame) -> None:
        """Send ``frame`` expecting no reply (``run``, ``cancel``); raises
        :class:`DaemonGoneError` when the connection has ended."""
        if not self.connected:
            raise DaemonGoneError(GONE)
        try:
            self._writer.write(encode(frame))
            await self._writer.drain()
        except (ConnectionError, RuntimeError):
            raise DaemonGoneError(GONE) from None

    async def request(self, frame: Frame) -> Any:
        """Send a request and return the ``data`` of its ``result``; its ``error`` raises
        :class:`DaemonError` with the daemon's message."""
        ref = str(next(self._refs))
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[ref] = waiter
        try:
            await self.send({**frame, "ref": ref})
            reply = await waiter
        finally:
            self._waiting.pop(ref, None)
        if reply["type"] == "error":
            raise DaemonError(str(reply.get("message", "❌ the daemon refused the request")))
        return reply.get("data")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()

    async def _read_all(self) -> None:
        problem: DaemonError = DaemonGoneError(GONE)
        try:
            while True:
                header = await self._reader.readexactly(HEADER.size)
                frame = decode(await self._reader.readexactly(body_length(header)))
                waiter = self._waiting.get(str(frame.get("ref", "")))
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
                else:
                    self.on_frame(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ProtocolError as exc:
            problem = DaemonError(f"❌ the daemon sent an unreadable frame: {exc}")
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(problem)
        self.on_frame(None)
