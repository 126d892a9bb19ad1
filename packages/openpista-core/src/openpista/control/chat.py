"""The control socket's requests for a chat client (the TUI attached to the daemon):
``home``, ``history``, ``command``, ``workers`` and ``reload``, answered by the daemon's
gateway as in-process (the same chat commands, models and stored sessions).

Each answer is sized to fit a frame: a history keeps only the text the TUI shows (no
attachments, long texts cut) and its newest messages up to :data:`HISTORY_BUDGET` bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from openpista.control.protocol import Frame
from openpista.memory.checks import MemoryStoreError, check_session_id
from openpista.models import Message

if TYPE_CHECKING:
    from openpista.control.server import ControlChannel
    from openpista.memory import WorkerLog

HISTORY_LIMIT = 500
"""The most messages a ``history`` answer holds by default (``limit`` asks for others)."""
MAX_HISTORY = 10000
HISTORY_BUDGET = 768 * 1024
"""The bytes of messages a ``history`` answer holds at most (a frame is 1 MiB)."""
MAX_SHOWN = 16384
"""A message's text (or tool output) is cut to this many characters in a history."""
MAX_COMMAND = 4096


class BadRequest(Exception):
    """A request frame whose fields are wrong; the message says which."""


def text_field(frame: Frame, key: str) -> str:
    """``frame[key]``, a non-empty string."""
    value = frame.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f'"{key}" must be a non-empty string')
    return value


def session_field(frame: Frame) -> str:
    """``frame["session"]``, a storable session id."""
    try:
        return check_session_id(frame.get("session"))
    except MemoryStoreError as exc:
        raise BadRequest(str(exc)) from None


def whole_number(frame: Frame, key: str, default: int, most: int) -> int:
    """``frame[key]`` (``default`` when missing), a whole number from 0 to ``most``."""
    value = frame.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise BadRequest(f'"{key}" must be a whole number from 0 to {most}')
    return value


class ChatRequests:
    """Answers the chat requests of ``channel``'s clients (each one a ``local:`` chat)."""

    def __init__(self, channel: ControlChannel) -> None:
        self.channel = channel
        self._worker_log: WorkerLog | None = None
        self._followers: dict[str, asyncio.Task[None]] = {}  # chat -> its worker feed

    async def home(self, channel_id: str, frame: Frame) -> Frame:
        """The TUI's home screen: recent sessions, the model, today's spend, the chat
        commands, the configuration file and the daemon's start-up warnings."""
        from openpista.cli.sessions import session_rows
        from openpista.observability.report import today_spend

        runtime = self.channel.gateway.runtime
        limit = whole_number(frame, "limit", 20, 1000)
        return _result(
            {
                "sessions": await session_rows(runtime.memory, limit),
                "model": self._model(),
                "spend": await today_spend(runtime),
                "commands": self.channel.gateway.commands.names,
                "config": str(runtime.settings.source_path or "~/.openpista/config.toml"),
                "warnings": list(runtime.problems),
            }
        )

    async def history(self, channel_id: str, frame: Frame) -> Frame:
        """The stored messages of ``session`` as the TUI shows them, newest ``limit``,
        and the model answering it; ``omitted`` counts older ones left out to fit."""
        session = session_field(frame)
        limit = whole_number(frame, "limit", HISTORY_LIMIT, MAX_HISTORY)
        memory = self.channel.gateway.runtime.memory
        found = await memory.get_session(session)
        stored = await memory.load_messages(session, limit=limit) if found and limit else []
        messages, size = [], 0
        for message in reversed(stored):
            shown = _shown(message)
            size += len(json.dumps(shown, ensure_ascii=False).encode())
            if size > HISTORY_BUDGET:
                break
            messages.append(shown)
        messages.reverse()
        data = {
            "session": session,
            "messages": messages,
            "omitted": len(stored) - len(messages),
            "model": self._model(session),
        }
        return _result(data)

    async def command(self, channel_id: str, frame: Frame) -> Frame:
        """The gateway's answer to the chat command ``text`` typed in ``session``'s chat:
        ``text``, ``is_error``, the ``session`` the chat is on afterwards (``/session``,
        ``/clear`` move it) and the ``model`` answering that session."""
        session = session_field(frame)
        text = text_field(frame, "text")
        if len(text) > MAX_COMMAND or not text.startswith("/"):
            raise BadRequest(f'"text" must be a chat command (/help) of at most {MAX_COMMAND}')
        gateway = self.channel.gateway
        reply = await gateway.commands.run(channel_id, session, text)
        if reply is None:
            raise BadRequest(f"{text.split()[0][:40]} is no chat command (/help lists them)")
        moved = reply.session_id or session
        return _result(
            {
                "text": reply.text,
                "is_error": reply.is_error,
                "session": moved,
                "model": self._model(moved),
            }
        )

    async def workers(self, channel_id: str, frame: Frame) -> Frame:
        """The worker dashboard's rows: the newest tasks with their log lines. With
        ``"follow": true`` the client is then sent each event of the daemon's worker feed
        as a ``{"type": "worker_event", "event": {...}}`` frame until it leaves."""
        from openpista.memory import WorkerLog
        from openpista.tui.effects import worker_rows

        if frame.get("follow") is True and channel_id not in self._followers:
            self._follow(channel_id)  # subscribed before the read: no event falls between
        if self._worker_log is None:
            self._worker_log = await WorkerLog.open(
                self.channel.gateway.runtime.settings.database.url
            )
        rows = await worker_rows(self._worker_log)
        return _result([dataclasses.asdict(row) for row in rows])

    async def reload(self, channel_id: str, frame: Frame) -> Frame:
        """Build the agents again (a login changed the keys); answers the ``model``."""
        self.channel.gateway.reload_model()
        return _result({"model": self._model()})

    def _follow(self, channel_id: str) -> None:
        from openpista.worker_service import worker_feed

        feed = worker_feed()
        queue = feed.subscribe()

        async def forward() -> None:
            try:
                while await self.channel.push(
                    channel_id, {"type": "worker_event", "event": await queue.get()}
                ):
                    pass
            finally:
                feed.unsubscribe(queue)
                self._followers.pop(channel_id, None)

        self._followers[channel_id] = asyncio.get_running_loop().create_task(forward())

    async def close(self) -> None:
        followers = list(self._followers.values())
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        if self._worker_log is not None:
            await self._worker_log.close()
            self._worker_log = None

    def _model(self, session: str | None = None) -> dict[str, Any]:
        from openpista.tui.effects import model_info

        gateway = self.channel.gateway
        return dataclasses.asdict(model_info(gateway.runtime, gateway, session))


def _result(data: Any) -> Frame:
    return {"type": "result", "data": data}


def _shown(message: Message) -> dict[str, Any]:
    """What the TUI shows of ``message`` as JSON: no attachments, long texts cut."""
    result = message.tool_result
    if result is not None:
        result = result.model_copy(update={"attachments": [], "output": result.output[:MAX_SHOWN]})
    calls = [
        c
        if len(c.raw_arguments or "") + len(json.dumps(c.arguments)) <= MAX_SHOWN
        else c.model_copy(update={"arguments": {}, "raw_arguments": "…"})
        for c in message.tool_calls
    ]
    short = message.model_copy(
        update={
            "content": message.content[:MAX_SHOWN],
            "attachments": [],
            "tool_result": result,
            "tool_calls": calls,
        }
    )
    return short.model_dump(mode="json")
