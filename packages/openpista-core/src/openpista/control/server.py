"""The daemon's side of the control socket: a local channel of the gateway.

:func:`bind_control` takes the socket file (mode 0600, in a directory no other user may
write; a stale file is replaced, a live one means a daemon already serves it).
:class:`ControlChannel` serves it: every connection is one local chat, channel id
``local:<random>``, so ``policy.local`` applies to its turns. A connection of another user
is refused (its peer credentials are checked, on top of the file mode). Frames that cannot
be read get an error frame; the daemon never falls over a client.

Turns run through :meth:`Gateway.handle <openpista.gateway.gateway.Gateway.handle>` in a
task of this channel rather than the gateway's queue: the channel owns the task, so that a
client's ``cancel`` (its Ctrl-C) or its disconnection cancels the turn in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import stat
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.control.budget import budget_request
from openpista.control.chat import BadRequest, ChatRequests, text_field, whole_number
from openpista.control.protocol import (
    HEADER,
    Frame,
    ProtocolError,
    body_length,
    decode,
    encode,
    error_frame,
)
from openpista.gateway.gateway import CANCELLED_NOTICE, STOPPING_NOTICE, Gateway, channel_problem
from openpista.memory import MemoryStoreError
from openpista.models import Answer, ApprovalPrompt, ChannelEvent, Outbound, ToolProgress
from openpista.serving import bind_unix

if TYPE_CHECKING:
    from openpista.gateway.daemon import PidFile

log = logging.getLogger(__name__)

MAX_PATH = 107
"""The longest unix socket path Linux accepts, in bytes."""
MAX_TOOL_OUTPUT = 65536
"""Tool results are cut to this many characters on the socket (clients show one line)."""
MAX_SESSIONS = 10000
MAX_REF = 64
"""The longest ``ref`` a request may carry (the daemon copies it into its reply)."""
_REQUEST_ID = re.compile(r"[0-9a-fA-F]{1,32}")
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlSocketError(RuntimeError):
    """The control socket cannot be served; the message names the fix."""


def bind_control(path: Path) -> socket.socket:
    """Listen on ``path``: owner-only (0600) in a directory (created 0700 when missing)
    that only its owner may write. A stale socket file (nobody listens) is replaced; a live
    one raises :class:`ControlSocketError`, as do a shared directory and a path too long."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or info.st_uid != os.geteuid():
        raise ControlSocketError(
            f"{directory} is writable by other users (mode {stat.filemode(info.st_mode)}, "
            f"owner uid {info.st_uid}): another user could replace the control socket; "
            f"make it yours and private (chmod 700 {directory}) or set OPENPISTA_HOME"
        )
    if len(os.fsencode(path)) > MAX_PATH:
        raise ControlSocketError(
            f"the control socket path {path} is longer than {MAX_PATH} bytes; "
            "set OPENPISTA_HOME to a shorter directory"
        )
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ControlSocketError(f"{path} exists and is not a socket; remove it")
        if _listening(path):
            raise ControlSocketError(
                f"another openpista daemon serves {path} (`openpista status` tells which)"
            )
    try:
        return bind_unix(path, mode=0o600)
    except OSError as exc:
        raise ControlSocketError(str(exc)) from None


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:  # refused: stale; any other failure: nobody we can reach either
        return False
    finally:
        probe.close()
    return True


@dataclass(eq=False)
class _Connection:
    """One client: its chat, its writer and the turn it runs (at most one)."""

    writer: asyncio.StreamWriter
    channel_id: str = field(default_factory=lambda: f"local:{secrets.token_hex(6)}")
    turn: asyncio.Task[None] | None = None
    cancel_frame: Frame | None = None  # what the client is told when its turn is cancelled
    closed: bool = False

    async def write(self, frame: Frame) -> None:
        """Send ``frame``; a client that went away is marked closed, never an error."""
        if self.closed:
            return
        try:
            data = encode(frame)
        except ProtocolError as exc:
            data = encode(error_frame(f"the daemon's answer does not fit in a frame: {exc}"))
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            self.closed = True

    def cancel(self, frame: Frame) -> None:
        """Cancel the running turn, if any; the client is sent ``frame``."""
        if self.turn is not None and not self.turn.done():
            self.cancel_frame = frame
            self.turn.cancel()


class ControlChannel(ChannelAdapter):
    """Serves the control socket ``sock`` (from :func:`bind_control`) for the daemon's
    gateway; ``pid_file`` answers ``status``."""

    name = "control"
    channel_prefix = "local:"
    capabilities = Capabilities(streaming=True)

    def __init__(self, sock: socket.socket, pid_file: PidFile) -> None:
        self.socket = sock
        self.path = Path(sock.getsockname())
        self.pid_file = pid_file
        self._inode = self.path.stat().st_ino
        self._server: asyncio.Server | None = None
        self._gateway: Gateway | None = None
        self._connections: dict[str, _Connection] = {}
        self.chat = ChatRequests(self)
        self._chat_requests = {
            "home": self.chat.home,
            "history": self.chat.history,
            "command": self.chat.command,
            "workers": self.chat.workers,
            "reload": self.chat.reload,
        }

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "the control channel has not started"  # noqa: S101  an invariant for mypy, not a check
        return self._gateway

    async def start(self, ctx: ChannelContext) -> None:
        """Accept clients; ``ctx`` must be the daemon's :class:`Gateway` (turns run through
        it, ``send`` asks which channels it serves)."""
        if not isinstance(ctx, Gateway):
            raise TypeError("the control channel is served by the daemon's gateway")
        self._gateway = ctx
        if self._server is None:
            self._server = await asyncio.start_unix_server(self._serve, sock=self.socket)

    async def stop(self) -> None:
        """Stop listening; turns still running get ``[gateway] shutdown_deadline`` seconds,
        then are cancelled (their clients are told so); remove the socket file."""
        if self._server is not None:
            self._server.close()
        turns = {c.turn for c in self._connections.values() if c.turn is not None}
        if turns and self._gateway is not None:
            deadline = self.gateway.runtime.settings.gateway.shutdown_deadline
            await asyncio.wait(turns, timeout=deadline)
            notice = Answer.error(CANCELLED_NOTICE.format(deadline=deadline))
            for connection in list(self._connections.values()):
                connection.cancel(_outbound(notice))
            await asyncio.gather(*turns, return_exceptions=True)
        for connection in list(self._connections.values()):
            connection.closed = True
            connection.writer.close()
        await self.chat.close()
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:  # not a socket of a later daemon
                self.path.unlink()

    async def send(self, message: Outbound) -> None:
        """Stream ``message`` to the client of its chat (dropped if it went away)."""
        connection = self._connections.get(message.channel_id)
        if connection is not None:
            await connection.write(_outbound(message))

    async def push(self, channel_id: str, frame: Frame) -> bool:
        """Send ``frame`` to the client of ``channel_id`` unasked (a worker feed event);
        ``False`` once that client has gone."""
        connection = self._connections.get(channel_id)
        if connection is None or connection.closed:
            return False
        await connection.write(frame)
        return not connection.closed

    # -- one client ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        try:
            uid = _peer_uid(writer)
            if uid != os.geteuid():
                log.warning("control socket: refused a connection of uid %s", uid)
                await connection.write(error_frame("this daemon serves only its own user"))
                return
            self._connections[connection.channel_id] = connection
            await self._converse(reader, connection)
        except Exception:  # the daemon outlives any one client
            log.exception("control socket: a client failed")
        finally:
            self._connections.pop(connection.channel_id, None)
            connection.cancel({"type": "cancelled"})  # the client left: its turn ends
            if connection.turn is not None:
                await asyncio.gather(connection.turn, return_exceptions=True)
            connection.closed = True
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        """Answer frames until the client closes or sends a frame too large to skip."""
        while True:
            try:
                header = await reader.readexactly(HEADER.size)
                body = await reader.readexactly(body_length(header))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except ProtocolError as exc:  # its body is not read: the stream cannot go on
                await connection.write(error_frame(str(exc)))
                return
            try:
                frame = decode(body)
            except ProtocolError as exc:
                await connection.write(error_frame(str(exc)))
                continue
            ref = frame.get("ref")
            if ref is not None and not (isinstance(ref, str) and len(ref) <= MAX_REF):
                await connection.write(error_frame(f'"ref" must be a string of at most {MAX_REF}'))
                continue
            reply = await self._answer(connection, frame)
            if reply is not None:
                await connection.write(reply if ref is None else {**reply, "ref": ref})

    async def _answer(self, connection: _Connection, frame: Frame) -> Frame | None:
        """The reply to one request (``None``: none, or it streams from the turn)."""
        kind = frame["type"]
        try:
            if kind == "run":
                return self._run(connection, frame)
            if kind == "cancel":
                connection.cancel({"type": "cancelled"})
                return None
            if kind == "approval":
                return await self._approval(connection, frame)
            if kind == "status":
                from openpista.cli.start import status_info

                return {"type": "result", "data": status_info(self.pid_file.state())}
            if kind == "sessions":
                return await self._sessions(frame)
            if kind == "send":
                return await self._deliver(frame)
            if kind == "budget":
                return await budget_request(self.gateway.runtime.meter, frame)
            if kind in self._chat_requests:
                return await self._chat_requests[kind](connection.channel_id, frame)
        except BadRequest as exc:
            return error_frame(f"{kind}: {exc}")
        except MemoryStoreError as exc:
            return error_frame(str(exc))
        shown = kind if len(kind) <= 40 else kind[:40] + "…"
        return error_frame(
            f"unknown frame type {shown!r} (expected run, cancel, approval, status, sessions, "
            "send, home, history, command, workers, reload or budget)"
        )

    def _run(self, connection: _Connection, frame: Frame) -> Frame | None:
        if connection.turn is not None:
            raise BadRequest("a turn is already running on this connection")
        text = text_field(frame, "text")
        session = frame.get("session") or uuid.uuid4().hex
        sender = frame.get("sender") or "local"
        if not isinstance(session, str) or not isinstance(sender, str):
            raise BadRequest('"session" and "sender" must be strings')
        event = ChannelEvent(
            channel_id=connection.channel_id,
            session_id=session,
            sender=sender,
            text=text,
            metadata={"request_id": secrets.token_hex(4)},
        )
        connection.cancel_frame = None
        connection.turn = asyncio.create_task(self._turn(connection, event))
        return None

    async def _turn(self, connection: _Connection, event: ChannelEvent) -> None:
        gateway = self.gateway
        try:
            if not gateway.ready:
                await gateway.wait_ready()  # started: the provider warms up; else stopping
            if not gateway.ready:
                await connection.write(_outbound(Answer.error(STOPPING_NOTICE)))
                return
            await gateway.handle(event)
        except asyncio.CancelledError:
            await connection.write(connection.cancel_frame or {"type": "cancelled"})
        except Exception as exc:  # the daemon outlives any one turn
            log.exception("control socket: the turn of %s failed", event.channel_id)
            await connection.write(
                _outbound(Answer.error(f"internal error: {channel_problem(exc)}"))
            )
        finally:
            connection.turn = None

    async def _approval(self, connection: _Connection, frame: Frame) -> Frame | None:
        request_id, approve = frame.get("id"), frame.get("approve")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise BadRequest('"id" must be the id of an approval request')
        if not isinstance(approve, bool):
            raise BadRequest('"approve" must be true or false')
        verb = "/approve" if approve else "/deny"
        reply = await self.gateway.run_command(connection.channel_id, f"{verb} {request_id}")
        if reply is not None and reply.text.startswith("❌"):
            return error_frame(reply.text)
        return None

    async def _sessions(self, frame: Frame) -> Frame:
        from openpista.cli.sessions import session_rows

        limit = whole_number(frame, "limit", 20, MAX_SESSIONS)
        return {"type": "result", "data": await session_rows(self.gateway.runtime.memory, limit)}

    async def _deliver(self, frame: Frame) -> Frame:
        channel_id, text = text_field(frame, "channel"), text_field(frame, "text")
        gateway = self.gateway
        adapter = gateway.adapter_for(channel_id)
        if adapter is None or adapter is self:
            served = ", ".join(a.name for a in gateway.adapters if a is not self) or "none"
            raise BadRequest(
                f"no channel served by this daemon owns {channel_id!r} (serving: {served}); "
                "a channel id is the channel's prefix and a chat, e.g. telegram:123"
            )
        try:
            for part in adapter.capabilities.split(Answer(channel_id=channel_id, text=text)):
                await adapter.send(part)
        except Exception as exc:  # the channel's own refusal (unknown chat, ...)
            problem = channel_problem(exc)
            raise BadRequest(f"{adapter.name} could not deliver it: {problem}") from None
        return {"type": "result", "data": {"channel": channel_id, "served_by": adapter.name}}


def _outbound(message: Outbound) -> Frame:
    """The frame carrying ``message`` (its JSON form; an approval adds its prompt text)."""
    if isinstance(message, ToolProgress) and message.result is not None:
        output = message.result.output
        if len(output) > MAX_TOOL_OUTPUT:
            result = message.result.model_copy(update={"output": output[:MAX_TOOL_OUTPUT]})
            message = message.model_copy(update={"result": result})
    frame: Frame = {"type": "outbound", "message": message.model_dump(mode="json")}
    if isinstance(message, ApprovalPrompt):
        frame["prompt"] = message.request.prompt()
    return frame


def _peer_uid(writer: asyncio.StreamWriter) -> int:
    sock: Any = writer.get_extra_info("socket")
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    return int(_CREDENTIALS.unpack(credentials)[1])
