"""The CLI's side of the control socket, stdlib only (no pydantic, SQLAlchemy or litellm).

:meth:`ControlClient.connect` returns ``None`` when no daemon listens (no socket file, or a
stale one), so that the command runs in-process instead.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from openpista.control.protocol import (
    HEADER,
    Frame,
    ProtocolError,
    body_length,
    decode,
    encode,
    socket_path,
)


class DaemonError(Exception):
    """The daemon refused a request or could not be talked to; the message is one ❌ line."""


class DaemonGoneError(DaemonError):
    """The connection broke: the daemon stopped (or was killed) before it answered."""


class ControlClient:
    """One connection to the running daemon."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    @classmethod
    def connect(cls, path: Path | None = None) -> ControlClient | None:
        """Connect to the daemon's socket (default :func:`socket_path`); ``None`` when no
        daemon listens there. Raises :class:`DaemonError` when one does but refuses us."""
        path = path or socket_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except PermissionError:
            sock.close()
            raise DaemonError(
                f"❌ cannot connect to the daemon at {path}: permission denied "
                "(it belongs to another user; use --no-daemon to run here)"
            ) from None
        except OSError:  # missing, stale (refused), or a path no socket can have
            sock.close()
            return None
        return cls(sock)

    def send(self, frame: Frame) -> None:
        """Send one frame; raises :class:`DaemonGoneError` if the daemon went away, or
        :class:`DaemonError` with its words if it refused us and hung up first."""
        try:
            self.socket.sendall(encode(frame))
        except OSError:
            refusal = self._last_words()
            raise (DaemonError(refusal) if refusal else DaemonGoneError(GONE)) from None

    def _last_words(self) -> str | None:
        """The message of an ``error`` frame the daemon sent before it closed, if any."""
        try:
            frame = self.receive()
        except DaemonError:
            return None
        return str(frame.get("message")) if frame.get("type") == "error" else None

    def receive(self) -> Frame:
        """The next frame from the daemon; raises :class:`DaemonGoneError` when the
        connection ends, :class:`DaemonError` when the daemon sends no valid frame."""
        try:
            body = self._read(body_length(self._read(HEADER.size)))
            return decode(body)
        except ProtocolError as exc:
            raise DaemonError(f"❌ the daemon sent an unreadable frame: {exc}") from None

    def request(self, frame: Frame) -> Any:
        """Send a request and return the ``data`` of its ``result``; an ``error`` frame
        raises :class:`DaemonError` with its message."""
        self.send(frame)
        reply = self.receive()
        if reply["type"] == "error":
            raise DaemonError(str(reply.get("message", "❌ the daemon refused the request")))
        if reply["type"] != "result":
            raise DaemonError(f"❌ the daemon answered {reply['type']!r} to {frame['type']!r}")
        return reply.get("data")

    def close(self) -> None:
        self.socket.close()

    def _read(self, size: int) -> bytes:
        chunks: list[bytes] = []
        while size:
            try:
                chunk = self.socket.recv(min(size, 1 << 16))
            except (ConnectionError, TimeoutError):
                chunk = b""
            if not chunk:
                raise DaemonGoneError(GONE)
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


GONE = "❌ the daemon stopped before it answered (see `openpista status`)"
