"""The daemon's control channel on a real gateway, driven by a socket client in-process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from openpista.channels import Capabilities
from openpista.control.client import DaemonError, DaemonGoneError
from openpista.control.protocol import HEADER, Frame, body_length, decode, encode
from openpista.control.server import ControlChannel, bind_control
from openpista.gateway.daemon import PidFile
from openpista.models import Outbound
from openpista_testing.adapters import LoopbackAdapter, QueueContext
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.polling import eventually


class RefusingAdapter(LoopbackAdapter):
    """A channel whose service turns every message down (an unknown chat)."""

    async def send(self, message: Outbound) -> None:
        raise ValueError("Bad Request: chat not found")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, frame: Frame) -> None:
        self.writer.write(encode(frame))
        await self.writer.drain()

    async def receive(self) -> Frame:
        header = await asyncio.wait_for(self.reader.readexactly(HEADER.size), 30)
        return decode(await self.reader.readexactly(body_length(header)))

    async def until_answer(self) -> list[Frame]:
        frames = [await self.receive()]
        while frames[-1].get("message", {}).get("kind") != "answer":
            frames.append(await self.receive())
        return frames


@pytest.fixture
def loop_adapter() -> LoopbackAdapter:
    return LoopbackAdapter(capabilities=Capabilities(streaming=True, max_message_length=100))


@pytest.fixture
async def control(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways, loop_adapter: LoopbackAdapter
) -> ControlChannel:
    sock = bind_control(tmp_path / "state" / "control.sock")
    channel = ControlChannel(sock, PidFile(tmp_path / "openpista.pid"))
    settings = emulator_settings(llm_emulator, tmp_path)
    await gateways.start(settings, loop_adapter, RefusingAdapter("refuse:"), channel)
    return channel


@pytest.fixture
async def client(control: ControlChannel) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_unix_connection(str(control.path))
    yield Client(reader, writer)
    writer.close()


async def test_a_turn_streams_back_as_a_local_chat(
    client: Client, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("streamed answer")
    await client.send({"type": "run", "text": "hi", "session": "s1"})
    frames = await client.until_answer()
    kinds = [f["message"]["kind"] for f in frames]
    assert kinds[-1] == "answer"
    assert "chunk" in kinds
    answer: dict[str, Any] = frames[-1]["message"]
    assert (answer["text"], answer["session_id"]) == ("streamed answer", "s1")
    assert answer["channel_id"].startswith("local:")


async def test_one_turn_at_a_time_per_connection(client: Client, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 5"})])
    await client.send({"type": "run", "text": "slow", "session": "s2"})
    await client.send({"type": "run", "text": "and another", "session": "s2"})
    error = await client.receive()
    while error["type"] != "error":  # the first turn's progress may come first
        error = await client.receive()
    assert error["message"] == "❌ run: a turn is already running on this connection"
    await client.send({"type": "cancel"})
    while (await client.receive())["type"] != "cancelled":
        pass


async def test_send_reaches_a_served_chat_and_reports_a_refusal(
    client: Client, loop_adapter: LoopbackAdapter, llm_emulator: LlmEmulator
) -> None:
    await client.send({"type": "send", "channel": "loop:ada", "text": "backup done"})
    assert await client.receive() == {
        "type": "result",
        "data": {"channel": "loop:ada", "served_by": "loop"},
    }
    assert loop_adapter.texts("ada") == ["backup done"]
    await client.send({"type": "send", "channel": "loop:bob", "text": "log line " * 30})
    assert (await client.receive())["type"] == "result"
    parts = loop_adapter.texts("bob")
    assert len(parts) == 3
    assert all(len(part) <= 100 for part in parts)  # within the channel's limit
    assert " ".join(parts).split() == ["log", "line"] * 30
    await client.send({"type": "send", "channel": "refuse:1", "text": "hello"})
    refused = await client.receive()
    assert refused["message"] == (
        "❌ send: refuse could not deliver it: ValueError: Bad Request: chat not found"
    )
    await client.send({"type": "send", "channel": "nowhere:1", "text": "hello"})
    unserved = await client.receive()
    assert "(serving: loop, refuse)" in unserved["message"]
    assert not llm_emulator.requests


async def test_stop_removes_only_its_own_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "control.sock"
    channel = ControlChannel(bind_control(path), PidFile(tmp_path / "pid"))
    path.unlink()  # a later daemon took the path over
    later = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    later.bind(str(path))
    try:
        await channel.stop()
        assert path.exists()
    finally:
        later.close()
    mine = ControlChannel(bind_control(path), PidFile(tmp_path / "pid"))
    await mine.stop()
    assert not path.exists()


async def test_the_channel_serves_only_a_gateway(tmp_path: Path) -> None:
    channel = ControlChannel(bind_control(tmp_path / "s" / "control.sock"), PidFile(tmp_path / "p"))
    with pytest.raises(TypeError, match="daemon's gateway"):
        await channel.start(QueueContext())
    await channel.stop()


# -- the chat requests of an attached TUI -------------------------------------------------


async def request(client: Client, frame: Frame) -> Frame:
    """Send ``frame`` with a ref and return the reply that carries it back."""
    await client.send({**frame, "ref": "r1"})
    reply = await client.receive()
    assert reply.pop("ref") == "r1", reply
    return reply


async def test_home_lists_sessions_the_model_and_the_chat_commands(
    client: Client, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("hello back")
    await client.send({"type": "run", "text": "hi", "session": "home-1"})
    await client.until_answer()
    reply = await request(client, {"type": "home"})
    assert reply["type"] == "result"
    home = reply["data"]
    assert [row["id"] for row in home["sessions"]] == ["home-1"]
    assert home["sessions"][0]["messages"] == 2
    assert (home["model"]["provider"], home["model"]["model"]) == ("openai", "gpt-4o-mini")
    assert "key in config" in home["model"]["key_status"]
    assert {"help", "model", "session", "clear", "usage", "approve", "deny"} <= set(
        home["commands"]
    )
    assert home["config"].endswith(".toml")


async def test_history_is_the_session_s_messages_newest_kept(
    client: Client, control: ControlChannel, llm_emulator: LlmEmulator
) -> None:
    from openpista.models import Message

    memory = control.gateway.runtime.memory
    await memory.bind_channel("loop:history", "long")  # creates the session
    messages = [Message(role="user", content="first question")]
    messages += [Message(role="assistant", content="x" * 100_000)]
    messages += [Message(role="user", content=f"q{i} " + "y" * 16000) for i in range(60)]
    await memory.append_messages("long", messages)
    history = (await request(client, {"type": "history", "session": "long"}))["data"]
    shown = history["messages"]
    assert shown[-1]["content"].startswith("q59 ")
    assert history["omitted"] == len(messages) - len(shown) > 0  # the frame budget
    assert len(encode({"type": "result", "data": history})) < 1 << 20
    assert history["model"]["model"] == "gpt-4o-mini"
    small = (await request(client, {"type": "history", "session": "long", "limit": 2}))["data"]
    assert [m["content"][:3] for m in small["messages"]] == ["q58", "q59"]
    await memory.bind_channel("loop:clip", "clip")
    await memory.append_messages("clip", messages[:2])
    clip = (await request(client, {"type": "history", "session": "clip"}))["data"]
    assert [m["content"] for m in clip["messages"]] == ["first question", "x" * 16384]
    empty = (await request(client, {"type": "history", "session": "never-used"}))["data"]
    assert (empty["messages"], empty["omitted"]) == ([], 0)


async def test_chat_commands_are_answered_by_the_gateway_for_the_session(
    client: Client, llm_emulator: LlmEmulator
) -> None:
    switched = await request(
        client, {"type": "command", "session": "c1", "text": "/model openai/gpt-4o"}
    )
    assert switched["data"]["model"]["model"] == "gpt-4o"
    assert switched["data"]["session"] == "c1"
    llm_emulator.reply_text("from the switched model")
    await client.send({"type": "run", "text": "hi", "session": "c1"})
    await client.until_answer()
    assert llm_emulator.requests[-1].json["model"] == "gpt-4o"
    cleared = await request(client, {"type": "command", "session": "c1", "text": "/clear"})
    assert cleared["data"]["session"] != "c1"
    assert cleared["data"]["text"].startswith("new session ")
    assert cleared["data"]["model"]["model"] == "gpt-4o-mini"  # the new session's default
    helped = await request(client, {"type": "command", "session": "c1", "text": "/help"})
    assert "/usage" in helped["data"]["text"]


async def test_an_approval_is_answered_with_a_chat_command_on_the_turn_s_connection(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    sock = bind_control(tmp_path / "state" / "control.sock")
    channel = ControlChannel(sock, PidFile(tmp_path / "openpista.pid"))
    settings = emulator_settings(llm_emulator, tmp_path)
    settings = settings.model_copy(
        update={"policy": settings.policy.model_copy(update={"local": "ask"})}
    )
    await gateways.start(settings, channel)
    reader, writer = await asyncio.open_unix_connection(str(channel.path))
    client = Client(reader, writer)
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo approved-run"})])
    llm_emulator.reply_text("it ran")
    await client.send({"type": "run", "text": "run it", "session": "a1"})
    frame = await client.receive()
    while frame.get("message", {}).get("kind") != "approval":
        frame = await client.receive()
    request_id = frame["message"]["request"]["id"]
    answered = await request(
        client, {"type": "command", "session": "a1", "text": f"/approve {request_id}"}
    )
    assert answered["type"] == "result", answered
    frames = await client.until_answer()
    assert frames[-1]["message"]["text"] == "it ran"
    results = [f["message"]["result"] for f in frames if f["message"]["kind"] == "tool"]
    assert any(r and "approved-run" in r["output"] for r in results)
    writer.close()


async def test_reload_and_workers_answer_the_model_and_the_dashboard_rows(
    client: Client, control: ControlChannel
) -> None:
    reloaded = await request(client, {"type": "reload"})
    assert reloaded["data"]["model"]["provider"] == "openai"
    assert await request(client, {"type": "workers"}) == {"type": "result", "data": []}
    from datetime import UTC, datetime, timedelta

    from openpista.memory import WorkerLog
    from openpista.memory.worker_reports import token_digest

    log = await WorkerLog.open(control.gateway.runtime.settings.database.url)
    now = datetime.now(UTC)
    task = {
        "task_id": "cafe0001",
        "session_id": "s1",
        "channel_id": "telegram:42",
        "token_sha256": token_digest("x"),
        "created_at": now,
        "expires_at": now + timedelta(minutes=5),
    }
    body = {"v": 1, "task_id": "cafe0001", "report_id": "r0", "kind": "progress"}
    await log.store_report(task, {**body, "log": ["step one"], "percent": 40}, now)
    await log.close()
    [row] = (await request(client, {"type": "workers"}))["data"]
    assert (row["task_id"], row["status"], row["percent"]) == ("cafe0001", "running", 40)
    assert row["logs"] == ["step one"]


async def test_workers_with_follow_pushes_the_worker_feed_until_the_client_leaves(
    client: Client, control: ControlChannel
) -> None:
    from openpista.worker_service import worker_feed

    feed = worker_feed()
    before = len(feed._queues)
    assert (await request(client, {"type": "workers", "follow": True}))["data"] == []
    await request(client, {"type": "workers", "follow": True})  # shown again: one follower
    assert len(feed._queues) == before + 1
    event = {"v": 1, "event": "progress", "task_id": "t1", "log": ["live"], "percent": 7}
    feed.publish(event)
    assert await client.receive() == {"type": "worker_event", "event": event}
    client.writer.close()
    await eventually(lambda: not control._connections)
    feed.publish(event)  # the follower finds its client gone and leaves the feed
    await eventually(lambda: len(feed._queues) == before)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"type": "home", "ref": 7}, '"ref" must be a string of at most 64'),
        ({"type": "home", "ref": "r" * 65}, '"ref" must be a string of at most 64'),
        ({"type": "home", "limit": -1}, '"limit" must be a whole number from 0 to 1000'),
        ({"type": "history"}, "session id must be a string, not NoneType"),
        ({"type": "history", "session": ["s"]}, "session id must be a string, not list"),
        ({"type": "history", "session": "s" * 5000}, "the limit is"),
        ({"type": "history", "session": "a\x00b"}, "contains control characters"),
        ({"type": "history", "session": "s", "limit": True}, '"limit" must be a whole number'),
        ({"type": "history", "session": "s", "limit": 10**9}, '"limit" must be a whole number'),
        ({"type": "command", "session": "s"}, '"text" must be a non-empty string'),
        ({"type": "command", "session": "s", "text": 5}, '"text" must be a non-empty string'),
        ({"type": "command", "session": "s", "text": "hello"}, '"text" must be a chat command'),
        ({"type": "command", "session": "s", "text": "/" + "h" * 5000}, "at most 4096"),
        ({"type": "command", "session": "s", "text": "/nosuch x"}, "/nosuch is no chat command"),
        ({"type": "command", "text": "/help"}, "session id must be a string"),
        ({"type": "histories"}, "expected run, cancel, approval, status, sessions, send, home"),
    ],
)
async def test_hostile_chat_requests_get_one_error_line_and_the_connection_serves_on(
    client: Client, frame: Frame, message: str
) -> None:
    await client.send(frame)
    reply = await client.receive()
    assert reply["type"] == "error"
    assert reply["message"].startswith("❌ ")
    assert message in reply["message"], reply["message"]
    if isinstance(frame.get("ref"), str) and len(frame["ref"]) <= 64:
        assert reply["ref"] == frame["ref"]
    assert (await request(client, {"type": "home"}))["type"] == "result"


# -- the TUI's side: StreamClient and RemoteEffects ---------------------------------------


@pytest.fixture
async def remote(control: ControlChannel) -> AsyncIterator[tuple[Any, list[Any]]]:
    from openpista.control.client import ControlClient
    from openpista.tui.remote import RemoteEffects, attach

    client = ControlClient.connect(control.path)
    assert client is not None
    connection, home = await attach(client)
    assert "help" in home["commands"]
    actions: list[Any] = []
    yield RemoteEffects(connection, actions.append, "tester", lambda: None), actions
    await connection.close()


def answers(actions: list[Any]) -> list[Any]:
    from openpista.models import Answer
    from openpista.tui.state import ResponseReceived

    return [
        a.response
        for a in actions
        if isinstance(a, ResponseReceived) and isinstance(a.response, Answer)
    ]


async def test_a_request_is_answered_while_a_turn_streams_on_the_same_connection(
    control: ControlChannel, llm_emulator: LlmEmulator
) -> None:
    from openpista.control.stream import StreamClient

    frames: list[Frame | None] = []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(control.path))
    connection = await StreamClient.over(sock)
    connection.on_frame = frames.append
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 30"})])
    await connection.send({"type": "run", "text": "slow", "session": "st1"})
    await eventually(lambda: any(f and f["message"]["kind"] == "tool" for f in frames))
    home = await connection.request({"type": "home"})
    assert "st1" in [row["id"] for row in home["sessions"]]
    with pytest.raises(DaemonError, match="history: session id must be a string"):
        await connection.request({"type": "history"})
    await connection.send({"type": "cancel"})
    await eventually(lambda: {"type": "cancelled"} in frames)
    assert all(f is None or "ref" not in f for f in frames)  # replies went to their request
    await control.stop()  # the daemon goes away: pending requests fail, the stream ends
    await eventually(lambda: frames[-1] is None)
    with pytest.raises(DaemonGoneError):
        await connection.request({"type": "home"})
    await connection.close()


async def test_remote_effects_run_the_tui_s_chat_in_the_daemon(
    remote: tuple[Any, list[Any]], llm_emulator: LlmEmulator
) -> None:
    from openpista.tui.state import (
        CommandAnswered,
        HomeLoaded,
        LoadHome,
        LoadWorkers,
        OpenSession,
        RunCommand,
        SendMessage,
        SessionOpened,
        WorkersLoaded,
    )

    effects, actions = remote
    llm_emulator.reply_text("first answer", chunk_size=4)
    llm_emulator.reply_text("second answer")
    await effects.run(SendMessage("rm1", "one"))
    await effects.run(SendMessage("rm1", "two"))  # waits for the first turn here
    await eventually(lambda: len(answers(actions)) == 2)
    assert [a.text for a in answers(actions)] == ["first answer", "second answer"]
    await effects.run(OpenSession("rm1"))
    opened = actions[-1]
    assert isinstance(opened, SessionOpened)
    assert [m.content for m in opened.messages] == ["one", "first answer", "two", "second answer"]
    await effects.run(RunCommand("rm1", "/model openai/gpt-4o"))
    switched = actions[-1]
    assert isinstance(switched, CommandAnswered)
    assert switched.model is not None
    assert switched.model.model == "gpt-4o"
    await effects.run(RunCommand("rm1", "/clear"))
    moved = actions[-1]
    assert isinstance(moved, SessionOpened)
    assert moved.session_id != "rm1"
    assert moved.notice.startswith("new session ")
    await effects.run(RunCommand("rm1", "/nosuch"))
    assert actions[-1].message.startswith("❌ command: /nosuch is no chat command")
    await effects.run(LoadHome())
    home = actions[-1]
    assert isinstance(home, HomeLoaded)
    assert "rm1" in [row.id for row in home.sessions]
    assert home.model.model == "gpt-4o-mini"
    await effects.run(LoadWorkers())
    assert actions[-1] == WorkersLoaded(())


async def test_remote_cancel_stops_the_turn_in_the_daemon_and_a_lost_daemon_is_one_line(
    remote: tuple[Any, list[Any]], control: ControlChannel, llm_emulator: LlmEmulator
) -> None:
    from openpista.tui.remote import DAEMON_GONE
    from openpista.tui.state import CancelTurns, Failed, SendMessage, TurnsCancelled

    effects, actions = remote
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 30"})])
    await effects.run(SendMessage("rc1", "slow"))
    await effects.run(SendMessage("rc1", "queued behind it"))
    await eventually(lambda: any(getattr(a, "response", None) for a in actions))
    await effects.run(CancelTurns())
    assert actions[-1] == TurnsCancelled()
    await eventually(lambda: effects._session is None)
    stored = await control.gateway.runtime.memory.load_messages("rc1")
    assert [m.content for m in stored if m.role == "user"] == ["slow"]  # the queued one never ran
    assert len(llm_emulator.requests) == 1
    await control.stop()
    await eventually(lambda: Failed(DAEMON_GONE) in actions)
    await effects.run(SendMessage("rc1", "after"))
    await eventually(lambda: any(a.text == DAEMON_GONE for a in answers(actions)))


async def test_a_malformed_chat_request_is_an_error_and_an_oversized_one_ends_the_connection(
    client: Client,
) -> None:
    client.writer.write(HEADER.pack(18) + b'{"type":"history",')
    await client.writer.drain()
    malformed = await client.receive()
    assert malformed["type"] == "error"
    assert "ref" not in malformed  # an unreadable frame has no ref to answer
    assert (await request(client, {"type": "home"}))["type"] == "result"  # still served
    huge = b'{"type":"command","session":"s","text":"/' + b"h" * (1 << 20) + b'"}'
    client.writer.write(HEADER.pack(len(huge)) + huge[:100])  # the header is enough
    refused = await client.receive()
    assert refused["message"].startswith("❌ frame too large")
    assert await client.reader.read() == b""  # closed: its body was not read


async def test_an_unreadable_answer_of_the_daemon_is_one_line_in_the_tui(tmp_path: Path) -> None:
    from openpista.control.stream import StreamClient
    from openpista.tui.remote import RemoteEffects
    from openpista.tui.state import Failed, LoadHome, OpenSession

    async def odd_daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # answers every request with data of the wrong shape
            try:
                header = await reader.readexactly(HEADER.size)
            except asyncio.IncompleteReadError:
                return
            request = decode(await reader.readexactly(body_length(header)))
            data = {"sessions": 5, "messages": [{"role": "nobody"}], "model": {}}
            writer.write(encode({"type": "result", "ref": request["ref"], "data": data}))

    path = tmp_path / "odd.sock"
    server = await asyncio.start_unix_server(odd_daemon, str(path))
    reader, writer = await asyncio.open_unix_connection(str(path))
    actions: list[Any] = []
    effects = RemoteEffects(StreamClient(reader, writer), actions.append, "t", lambda: None)
    await effects.run(LoadHome())
    await effects.run(OpenSession("s"))
    assert all(isinstance(a, Failed) for a in actions)
    assert [a.message.split(":")[0] for a in actions] == ["the daemon's answer is unreadable"] * 2
    await effects.connection.close()
    server.close()
