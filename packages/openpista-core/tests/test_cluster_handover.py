"""The hand-over in process: real gateways on one real PostgreSQL, each a replica with its
own lease connection, inbox and outbox (docs/scale-out.md). Daemons: test_cluster_e2e.py."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from openpista import cluster_handover
from openpista.cluster import ClusterMember, cluster_dsn
from openpista.cluster_approvals import ClusterApprovals
from openpista.cluster_handover import Handover, outbox_channel
from openpista.cluster_media import pack
from openpista.config import ClusterSettings, DatabaseSettings, PolicySettings, Settings
from openpista.files import turn_output_dir
from openpista.gateway.gateway import Gateway
from openpista.memory.store import INTERRUPTED
from openpista.models import Answer, Attachment, ChannelEvent, TextChunk, ToolProgress
from openpista.outbox import inlined
from openpista.tools.base import Tool, ToolOutput
from openpista.tools.context import current_turn
from openpista.tools.registry import tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator, Reply, ToolCallsReply
from openpista_testing.gateways import Gateways
from openpista_testing.hostile import ALLOWED, HOSTILE_NAMES, attachment_tool

pytestmark = pytest.mark.postgres

WAIT = 30.0
Replica = tuple[Gateway, ClusterMember, LoopbackAdapter]
Start = Callable[..., Awaitable[Replica]]


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def answering(llm_emulator: LlmEmulator) -> LlmEmulator:
    def reply(body: dict[str, Any]) -> str:
        return f"answer to {body['messages'][-1]['content']}"

    llm_emulator.default_reply = reply
    return llm_emulator


@pytest.fixture
async def replicas(
    tmp_path: Path, answering: LlmEmulator, fresh_postgres_url: str, gateways: Gateways
) -> AsyncIterator[Start]:
    members: list[ClusterMember] = []

    async def start(
        name: str,
        *,
        http: bool = False,
        approvals: bool = False,
        handover: bool = True,
        slots: int | None = None,
    ) -> Replica:
        settings: Settings = emulator_settings(answering, tmp_path / name)
        settings.database = DatabaseSettings(url=fresh_postgres_url)
        settings.cluster = ClusterSettings(enabled=True, replica_id=name, heartbeat=0.05)
        member = await ClusterMember.join(settings)
        members.append(member)
        adapter = LoopbackAdapter("chat:")
        adapter.replies_anywhere = http
        adapter.media_dir = tmp_path / name / "media"
        settings.policy = PolicySettings(remote="ask", approval_timeout=30)
        if slots is not None:  # the dispatcher's and the hand-over's, as in the daemon
            settings.gateway.max_concurrent_turns = slots
        gateway = await gateways.start(settings, adapter, approvals=approvals)
        gateway.router.leases = member
        if not handover:  # turns wait for the lease (a message with files saved here)
            return gateway, member, adapter
        gateway.handover = await Handover.start(member, gateway, slots or 8)
        if gateway.approvals is not None:
            elsewhere = ClusterApprovals(member, gateway.handover.pool, gateway.approvals)
            await elsewhere.start()
            gateway.approvals_elsewhere = elsewhere
        return gateway, member, adapter

    yield start
    for gateway in gateways.opened:
        await gateway.stop(0)
    for member in members:
        await member.close()


async def stored_events(url: str) -> int:
    """How many events wait in the inbox."""
    conn = await asyncpg.connect(cluster_dsn(Settings(database=DatabaseSettings(url=url))))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM cluster_inbox"))
    finally:
        await conn.close()


@pytest.mark.parametrize("http", [False, True], ids=["connection", "http"])
async def test_a_turn_handed_over_is_answered_once_through_the_right_replica(
    replicas: Start, fresh_postgres_url: str, http: bool
) -> None:
    (a, a_member, a_chat), (_, _, b_chat) = (
        await replicas("a", http=http),
        await replicas("b", http=http),
    )
    session = await a.session_for("chat:alice")
    assert await a_member.try_acquire(session)  # a turn of alice's runs on a
    await b_chat.say("alice", "hello")  # ... when her message reaches b
    await until(lambda: _true(stored_events(fresh_postgres_url)), "the message is stored")
    a.handover.claim(session)  # type: ignore[union-attr]  # a's turn ends: it drains alice
    receiver, other = (a_chat, b_chat) if http else (b_chat, a_chat)
    answer = await receiver.answer("alice")
    assert (answer.text, answer.session_id) == ("answer to hello", session)
    await until(lambda: _false(stored_events(fresh_postgres_url)), "the message is deleted")
    await a_member.release(session)
    assert [m for m in other.sent["chat:alice"] if isinstance(m, Answer)] == []
    assert receiver.texts("alice") == ["answer to hello"]


async def _false(count: Awaitable[int]) -> bool:
    return await count == 0


async def _true(count: Awaitable[int]) -> bool:
    return await count > 0


async def test_a_message_left_by_a_stopped_replica_is_answered_by_another(
    replicas: Start, fresh_postgres_url: str
) -> None:
    (a, _, a_chat), (b, b_member, b_chat) = (
        await replicas("a", http=True),
        await replicas("b", http=True),
    )
    session = await a.session_for("chat:bob")
    holder = await ClusterMember.join(
        Settings(
            database=DatabaseSettings(url=fresh_postgres_url),
            cluster=ClusterSettings(enabled=True, replica_id="holder"),
        )
    )
    try:
        assert await holder.try_acquire(session)
        await b_chat.say("bob", "still there?")  # acknowledged: stored
        await until(lambda: _true(stored_events(fresh_postgres_url)), "the message is stored")
        await b.stop(0)
        await b_member.close()  # b is gone before the session was free
    finally:
        await holder.close()  # the lease goes with the connection, unannounced
    answer = await a_chat.answer("bob")  # a's sweep found it
    assert answer.text == "answer to still there?"
    await until(lambda: _false(stored_events(fresh_postgres_url)), "the message is deleted")
    assert a_chat.texts("bob") == ["answer to still there?"]  # once
    assert b_chat.texts("bob") == []


async def test_the_sweep_leaves_a_just_stored_message_to_the_replica_it_reached(
    replicas: Start, fresh_postgres_url: str
) -> None:
    b, _, _ = await replicas("b")
    conn = await asyncpg.connect(
        cluster_dsn(Settings(database=DatabaseSettings(url=fresh_postgres_url)))
    )
    try:  # stored by a, which has not taken its lease yet: a's to run, not the sweep's
        await conn.execute(
            "INSERT INTO cluster_inbox (session_id, event, origin, reply_to) "
            "VALUES ('fresh', '{}', 'a', 'a')"
        )
        assert await b.handover.leftovers() == []  # type: ignore[union-attr]
        # Stored a while ago and still not leased: whoever stored it died.
        await conn.execute("UPDATE cluster_inbox SET created_at = now() - interval '1 minute'")
        assert await b.handover.leftovers() == ["fresh"]  # type: ignore[union-attr]
        await conn.execute("DELETE FROM cluster_inbox")
    finally:
        await conn.close()


async def test_an_approval_asked_on_one_replica_is_answered_on_another(
    replicas: Start, answering: LlmEmulator, tmp_path: Path
) -> None:
    (a, _, a_chat), (b, _, b_chat) = (
        await replicas("a", approvals=True),
        await replicas("b", approvals=True),
    )
    marker = tmp_path / "approved"
    answering.reply_tool_calls([("system_run", {"command": f"touch {marker}"})])
    await a_chat.say("alice", "make the file")
    prompt = await a_chat.prompt("alice")  # the turn runs on a, and waits
    request = prompt.request.id
    assert b.approval_pending("chat:alice", request)  # not asked on b: may wait elsewhere
    await b_chat.say("alice", f"/approve {request}")  # the button press reaches b
    reply = await b_chat.answer("alice")
    assert (reply.text, reply.is_error) == (f"✅ approved system.run ({request})", False)
    await a_chat.answer("alice")  # a's turn went on
    assert marker.exists()
    assert not a.approval_pending("chat:alice", request)
    await b_chat.say("alice", f"/approve {request}")  # again: nobody has it any more
    again = await b_chat.answer("alice")
    assert again.is_error
    assert again.text.startswith(f"❌ no approval request '{request}' is waiting here")


async def test_a_model_chosen_on_one_replica_answers_the_session_on_every_replica(
    replicas: Start, answering: LlmEmulator
) -> None:
    (_, _, a_chat), (_, _, b_chat) = await replicas("a"), await replicas("b")
    await b_chat.say("alice", "/model openai/gpt-chosen")
    assert (await b_chat.answer("alice")).text == "model: openai/gpt-chosen (this session)"
    await a_chat.say("alice", "/model")
    assert (await a_chat.answer("alice")).text.startswith("model: openai/gpt-chosen\n")
    await a_chat.say("alice", "hello")  # run on a
    assert (await a_chat.answer("alice")).text == "answer to hello"
    [request] = [r.json for r in answering.requests if r.path.endswith("/chat/completions")]
    assert request["model"] == "gpt-chosen"
    await a_chat.say("bob", "hello")  # another session: the default
    await a_chat.answer("bob")
    assert answering.requests[-1].json["model"] != "gpt-chosen"


async def test_a_turn_whose_lease_is_lost_is_answered_with_one_error(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str
) -> None:
    a, member, chat = await replicas("a", handover=False)
    answering.reply_text("too late", delay=20)
    await chat.say("alice", "slow")
    session = await a.session_for("chat:alice")
    await until(lambda: _holds(member, session), "the turn holds its lease")
    admin = await asyncpg.connect(member.dsn)
    try:  # what a partition looks like once the server gives up on the replica
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'openpista replica a'"
        )
    finally:
        await admin.close()
    answer = await chat.answer("alice")
    assert answer.is_error
    assert answer.text.startswith("❌ this answer was cancelled: this openpista replica lost")
    assert chat.texts("alice") == [answer.text]  # once, and not "too late"


async def _holds(member: ClusterMember, session: str) -> bool:
    return session in member._holders


async def test_an_http_channels_message_is_stored_before_submit_returns(
    replicas: Start, fresh_postgres_url: str
) -> None:
    """What a webhook acknowledges once ``submit`` returned survives its replica: stored
    by then, not left in memory for the gateway's dispatcher (stopped here, as if the
    replica died right after the acknowledgement)."""
    (a, a_member, a_chat), (b, _, b_chat) = (
        await replicas("a", http=True),
        await replicas("b", http=True),
    )
    [dispatcher] = [t for t in b._tasks if "Gateway._dispatch" in repr(t.get_coro())]
    dispatcher.cancel()
    session = await b.session_for("chat:alice")
    assert await a_member.try_acquire(session)  # a turn of alice's runs on a
    await b_chat.say("alice", "kept")
    assert await stored_events(fresh_postgres_url) == 1
    a.handover.claim(session)  # type: ignore[union-attr]  # a's turn ends: it drains alice
    assert (await a_chat.answer("alice")).text == "answer to kept"
    await a_member.release(session)
    assert b_chat.texts("alice") == []


async def test_a_message_that_cannot_be_stored_raises_from_submit_and_the_next_one_is(
    replicas: Start, fresh_postgres_url: str
) -> None:
    """A webhook is told (an error from ``submit``) so that the messenger delivers the message
    again; the replica serves on."""
    a, _, chat = await replicas("a", http=True)
    handover = a.handover
    assert handover is not None
    pool = handover.pool
    closed = await asyncpg.create_pool(handover.member.dsn, min_size=0, max_size=1)
    await closed.close()
    handover.pool = closed  # what a dead PostgreSQL connection pool looks like to a store
    with pytest.raises(asyncpg.InterfaceError):
        await chat.say("alice", "lost?")
    assert await stored_events(fresh_postgres_url) == 0
    assert chat.texts("alice") == []  # not answered as if it had been taken
    handover.pool = pool
    await chat.say("alice", "again")
    assert (await chat.answer("alice")).text == "answer to again"


@pytest.mark.parametrize("text", ["nul \x00 byte", "lone \ud800 half", "'); DROP TABLE x; --"])
async def test_any_text_is_handed_over(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str, text: str
) -> None:
    (a, a_member, _), (_, _, b_chat) = await replicas("a"), await replicas("b")
    session = await a.session_for("chat:alice")
    assert await a_member.try_acquire(session)  # a holds alice's session: b hands over
    await b_chat.say("alice", text)
    await until(lambda: _true(stored_events(fresh_postgres_url)), "the message is stored")
    a.handover.claim(session)  # type: ignore[union-attr]
    answer = await b_chat.answer("alice")
    assert not answer.is_error, answer.text
    assert answer.text == "answer to " + text.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    await a_member.release(session)


async def test_a_turn_cut_short_and_continued_stores_the_users_message_once(
    replicas: Start, answering: LlmEmulator
) -> None:
    a, member, chat = await replicas("a", http=True)
    await chat.say("alice", "before")  # an earlier turn: kept as it is
    assert (await chat.answer("alice")).text == "answer to before"
    answering.reply_text("too late", delay=20)
    await chat.say("alice", "hello")
    session = await a.session_for("chat:alice")
    await until(lambda: _asked(answering, "hello"), "the turn asks the LLM")
    admin = await asyncpg.connect(member.dsn)
    try:  # the replica's connection dies mid-turn (as when it is killed): the lease goes
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'openpista replica a'"
        )
    finally:
        await admin.close()
    answer = await chat.answer("alice")  # continued once the replica has reconnected
    assert answer.text == "answer to hello"
    stored = [(m.role, m.content) for m in await a.runtime.memory.load_messages(session)]
    assert stored == [
        ("user", "before"),
        ("assistant", "answer to before"),
        ("user", "hello"),
        ("assistant", "answer to hello"),
    ]
    assert chat.texts("alice") == ["answer to before", "answer to hello"]


async def test_a_turn_cut_short_by_a_dead_replica_continues_on_another_without_rerunning(
    replicas: Start, answering: LlmEmulator, tmp_path: Path
) -> None:
    (a, a_member, a_chat), (b, _, b_chat) = (
        await replicas("a", http=True),
        await replicas("b", http=True),
    )
    runs, started, go = tmp_path / "runs", tmp_path / "started", tmp_path / "go"
    waits = f"touch {started}; for i in $(seq 1200); do [ -f {go} ] && exit 0; sleep 0.05; done"

    def reply(body: dict[str, Any]) -> Reply | str:
        last = body["messages"][-1]
        if last["role"] == "user" and last["content"] == "do both":
            command = f"echo ran >> {runs}"
            return ToolCallsReply(
                [("system_run", {"command": command}), ("system_run", {"command": waits})]
            )
        if last["role"] == "user":
            return f"answer to {last['content']}"
        return "handled"

    answering.default_reply = reply
    await a_chat.say("alice", "do both")
    session = await a.session_for("chat:alice")

    async def first_result_stored() -> bool:
        stored = await b.runtime.memory.load_messages(session)
        done = [m for m in stored if m.tool_result and m.tool_result.output != INTERRUPTED]
        return started.exists() and len(done) == 1

    try:
        await until(first_result_stored, "the first call is done, the second runs")
        await a.stop(0)  # killed: its turn stops mid-call,
        await a_member.close()  # and its lease goes with its connection
        answer = await b_chat.answer("alice")  # b's sweep took the session over
        assert answer.text == "handled"
        assert runs.read_text() == "ran\n"  # the finished call did not run again
        asked_again = [
            r.json["messages"] for r in answering.requests if r.path.endswith("/chat/completions")
        ]
        assert sum(m[-1]["content"] == "do both" for m in asked_again) == 1
        sent = asked_again[-1]
        calls = [c["id"] for m in sent for c in m.get("tool_calls") or []]
        results = {m["tool_call_id"]: m["content"] for m in sent if m["role"] == "tool"}
        assert list(results) == calls
        assert results[calls[0]] != INTERRUPTED
        assert results[calls[1]] == INTERRUPTED  # told to the LLM, not run again
        await b_chat.say("alice", "next")
        assert (await b_chat.answer("alice")).text == "answer to next"
        later = answering.requests[-1].json["messages"]
        assert [m["tool_call_id"] for m in later if m["role"] == "tool"] == calls
        assert b_chat.texts("alice") == ["handled", "answer to next"]  # once each
        assert a_chat.texts("alice") == []
    finally:
        go.touch()


PHOTO = b"\x89PNG\r\n\x1a\n alice's photo"


@tool("test.chart")
async def chart() -> ToolOutput:
    """Draw a chart into the session's outbox."""
    turn = current_turn()
    drawn = turn_output_dir(turn.session_id if turn else "") / "chart.png"
    drawn.write_bytes(ALLOWED)
    return ToolOutput(
        "drawn", [Attachment(name="chart.png", mime_type="image/png", path=str(drawn))]
    )


def _completions(emulator: LlmEmulator) -> list[list[dict[str, Any]]]:
    return [r.json["messages"] for r in emulator.requests if r.path.endswith("/chat/completions")]


@pytest.mark.parametrize("moved", [False, True], ids=["chart-here", "chart-not-here"])
async def test_a_continued_turn_shows_the_users_photo_and_answers_with_the_earlier_files(
    replicas: Start,
    answering: LlmEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moved: bool,
) -> None:
    monkeypatch.setenv("OPENPISTA_HOME", str(tmp_path / "home"))
    (a, a_member, a_chat), (b, _, b_chat) = (
        await replicas("a", http=True),
        await replicas("b", http=True),
    )
    for gateway in (a, b):
        gateway.runtime.toolbox.tools.register(chart)
    started, go = tmp_path / "started", tmp_path / "go"
    waits = f"touch {started}; for i in $(seq 1200); do [ -f {go} ] && exit 0; sleep 0.05; done"

    def reply(body: dict[str, Any]) -> Reply | str:
        if body["messages"][-1]["role"] == "user":
            return ToolCallsReply([("test_chart", {}), ("system_run", {"command": waits})])
        return "a chart of your photo"

    answering.default_reply = reply
    photo = Attachment(
        name="photo.png",
        mime_type="image/png",
        path=_saved(a_chat, "photo.png", PHOTO),
        data=base64.b64encode(PHOTO).decode(),
    )
    assert a_chat.ctx is not None
    event = ChannelEvent(
        channel_id="chat:alice", sender="alice", text="chart this", attachments=[photo]
    )
    await a_chat.ctx.submit(event)
    session = await a.session_for("chat:alice")

    async def chart_stored() -> bool:
        stored = await b.runtime.memory.load_messages(session)
        done = [m for m in stored if m.tool_result and m.tool_result.output == "drawn"]
        return started.exists() and len(done) == 1

    try:
        await until(chart_stored, "the chart is drawn, the second call runs")
        await a.stop(0)  # killed mid-call: its lease goes with its connection
        await a_member.close()
        drawn = turn_output_dir(session) / "chart.png"
        if moved:  # drawn on a's disk, which b does not have
            drawn.unlink()
        answer = await b_chat.answer("alice")  # b's sweep continues the turn
    finally:
        go.touch()
    first, resumed = _completions(answering)
    [asked_first] = [m for m in first if m["role"] == "user"]
    [asked_again] = [m for m in resumed if m["role"] == "user"]
    text, image = asked_again["content"]  # the picture is shown again, inline
    assert image == asked_first["content"][1]
    assert image["image_url"]["url"] == photo.data_url()
    assert b_chat.media_dir is not None
    written = str(text["text"]).split(" at ", 1)[1].rstrip("]")
    assert Path(written).parent.parent == b_chat.media_dir / "handed-over"  # b's own file
    assert await asyncio.to_thread(Path(written).read_bytes) == PHOTO
    assert [m["content"] for m in resumed if m["role"] == "tool"] == ["drawn", INTERRUPTED]
    assert answer.text.split("\n\n")[0] == "a chart of your photo"
    if moved:
        assert answer.attachments == []
        assert answer.text.endswith("moved to this replica and not here: 'chart.png'")
    else:
        assert [(a.name, a.path) for a in answer.attachments] == [("chart.png", str(drawn))]
        assert answer.text == "a chart of your photo"
    assert b_chat.texts("alice") == [answer.text]
    assert a_chat.texts("alice") == []


async def _asked(emulator: LlmEmulator, text: str) -> bool:
    return any(
        r.json["messages"][-1]["content"] == text
        for r in emulator.requests
        if r.path.endswith("/chat/completions")
    )


@pytest.mark.parametrize("payload", ["", "x", "-1", "١٢", "9" * 400, "1; DROP TABLE x"])
async def test_a_hostile_cancel_notification_stops_nothing(
    replicas: Start, answering: LlmEmulator, payload: str
) -> None:
    a, member, chat = await replicas("a", http=True)
    answering.reply_text("on time", delay=0.5)
    await chat.say("alice", "hello")
    session = await a.session_for("chat:alice")
    await until(lambda: _asked(answering, "hello"), "the turn asks the LLM")
    admin = await asyncpg.connect(member.dsn)
    try:
        await admin.execute("SELECT pg_notify('openpista_cancel', $1)", payload)
    finally:
        await admin.close()
    assert (await chat.answer("alice")).text == "on time"
    assert member.connected
    stored = [m.content for m in await a.runtime.memory.load_messages(session)]
    assert stored == ["hello", "on time"]


async def _handed_to(
    replicas: Start, fresh_postgres_url: str, text: str, *tools: Tool
) -> LoopbackAdapter:
    """Replica a (with ``tools`` too) leases alice's session while ``text`` reaches b's
    connection; a runs it."""
    (a, a_member, _), (_, _, b_chat) = await replicas("a"), await replicas("b")
    for extra in tools:
        a.runtime.toolbox.tools.register(extra)
    session = await a.session_for("chat:alice")
    assert await a_member.try_acquire(session)
    await b_chat.say("alice", text)
    await until(lambda: _true(stored_events(fresh_postgres_url)), "the message is stored")
    a.handover.claim(session)  # type: ignore[union-attr]
    await a_member.release(session)
    return b_chat


def _streamed(chat: LoopbackAdapter, name: str) -> tuple[list[str], str, str]:
    """The kinds sent to chat ``name`` (adjacent chunks as one), the chunks' text joined
    and the answer's text."""
    sent = chat.sent["chat:" + name]
    every: list[str] = [m.kind for m in sent]
    kinds = [k for i, k in enumerate(every) if k != "chunk" or i == 0 or every[i - 1] != "chunk"]
    chunks = "".join(m.text for m in sent if isinstance(m, TextChunk))
    answers = [m.text for m in sent if isinstance(m, Answer)]
    return kinds, chunks, answers[-1] if answers else ""


async def test_a_handed_over_turn_streams_its_tool_progress_and_chunks_to_the_connection(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    wait = f"for i in $(seq 600); do [ -f {go} ] && exit 0; sleep 0.05; done; exit 1"
    answering.reply_tool_calls([("system_run", {"command": wait})])
    text = "streamed through replica b, piece by piece, as the LLM writes it"
    answering.reply_text(text, chunk_size=3)
    b_chat = await _handed_to(replicas, fresh_postgres_url, "run it")

    async def started() -> bool:
        return any(isinstance(m, ToolProgress) for m in b_chat.sent["chat:alice"])

    await until(started, "b's connection is told the tool started, while it runs")
    [progress] = b_chat.sent["chat:alice"]
    assert isinstance(progress, ToolProgress)
    assert progress.result is None
    go.touch()
    answer = await b_chat.answer("alice")
    assert answer.text == text
    kinds, chunks, last = _streamed(b_chat, "alice")
    assert kinds == ["tool", "tool", "chunk", "answer"]  # in order, the answer last
    assert (chunks, last) == (text, text)


async def test_a_delta_too_large_for_a_notification_is_streamed_through_the_outbox(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str
) -> None:
    text = 'é"' * 2000 + "end"  # escaped: 16 kB, over NOTIFY_MAX bytes in one delta
    answering.reply_text(text, chunk_size=len(text))
    b_chat = await _handed_to(replicas, fresh_postgres_url, "a long one")
    answer = await b_chat.answer("alice")
    kinds, chunks, _ = _streamed(b_chat, "alice")
    assert kinds == ["chunk", "answer"]
    assert chunks == answer.text == text


HOSTILE_OUTBOX = [
    "",
    "x",
    "9" * 400,
    "١٢",
    "[1]",
    "{}",
    '{"stored": "1", "messages": []}',
    '{"stored": 1, "messages": [{"kind": "nope"}]}',
    '{"stored": 1, "messages": {"kind": "chunk"}}',
    '{"stored": 1, "messages": [{"kind": "chunk", "channel_id": "chat:alice", "text": 5}]}',
    "{" * 3000,
    "[" * 7000,
]


async def test_hostile_outbox_notifications_and_rows_are_dropped(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str
) -> None:
    (_, _, _), (b, b_member, b_chat) = await replicas("a"), await replicas("b")
    channel = outbox_channel("b")
    admin = await asyncpg.connect(b_member.dsn)
    try:
        for payload in HOSTILE_OUTBOX:
            await admin.execute("SELECT pg_notify($1, $2)", channel, payload)
            row = await admin.fetchval(
                "INSERT INTO cluster_outbox (replica_id, message) VALUES ('b', $1) RETURNING id",
                payload or "null",
            )
            await admin.execute("SELECT pg_notify($1, $2)", channel, str(row))
        for _ in HOSTILE_OUTBOX:  # and rows never announced, found by the sweep
            await admin.execute(
                "INSERT INTO cluster_outbox (replica_id, message, created_at) "
                "VALUES ('b', '{\"stored\": 1}', now() - interval '1 minute')"
            )

        async def emptied() -> bool:
            return not await admin.fetchval("SELECT count(*) FROM cluster_outbox")

        await until(emptied, "every hostile row is taken")
    finally:
        await admin.close()
    await b_chat.say("alice", "still fine?")  # b delivers what is handed over, as before
    assert (await b_chat.answer("alice")).text == "answer to still fine?"
    assert b_member.connected
    assert [m.kind for m in b_chat.sent["chat:alice"]][-1] == "answer"
    assert b.handover is not None
    assert not b.handover._announced


def _saved(chat: LoopbackAdapter, name: str, content: bytes) -> str:
    """Save ``content`` as channel ``chat`` does with what a user sends; its path."""
    assert chat.media_dir is not None
    path = chat.media_dir / "alice" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


async def test_a_file_sent_through_one_replica_is_read_on_the_replica_running_its_turn(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str, tmp_path: Path
) -> None:
    (a, a_member, a_chat), (_, _, b_chat) = await replicas("a"), await replicas("b")
    session = await a.session_for("chat:alice")
    assert await a_member.try_acquire(session)  # a runs alice's turns
    content = "the report's content: 42 é"
    saved = _saved(b_chat, "report.txt", content.encode())

    def reply(body: dict[str, Any]) -> Reply | str:
        last = body["messages"][-1]
        if last["role"] == "user":  # the tool reads the file where the turn runs
            path = str(last["content"]).split(" at ", 1)[1].rstrip("]")
            return ToolCallsReply([("system_run", {"command": f"cat {path}"})])
        return "read"

    answering.default_reply = reply
    assert b_chat.ctx is not None
    event = ChannelEvent(
        channel_id="chat:alice",
        sender="alice",
        text="read my file",
        attachments=[Attachment(name="../../report.txt", mime_type="text/plain", path=saved)],
    )
    await b_chat.ctx.submit(event)
    await until(lambda: _true(stored_events(fresh_postgres_url)), "the message is stored")
    await asyncio.to_thread(
        Path(saved).unlink
    )  # the bytes travel in the stored event, not as a path
    a.handover.claim(session)  # type: ignore[union-attr]
    await a_member.release(session)
    assert (await b_chat.answer("alice")).text == "read"
    first, second = [r.json for r in answering.requests if r.path.endswith("/chat/completions")]
    path = str(first["messages"][-1]["content"]).split(" at ", 1)[1].rstrip("]")
    assert a_chat.media_dir is not None
    assert Path(path).parent.parent == a_chat.media_dir / "handed-over"  # a's own directory
    assert content in str(second["messages"][-1]["content"])  # the tool read the bytes
    await until(lambda: _false(stored_events(fresh_postgres_url)), "the event (and file) is gone")


FORGED = {
    "a path": [{"name": "passwd", "path": "/etc/passwd"}],
    "a relative path": [{"name": "passwd", "path": "../../../../etc/passwd"}],
}
FORGED_FILES: dict[str, Any] = {
    "files not a list": {"attachment": 0},
    "no attachment": [{"attachment": 1, "data": "aGk="}],
    "a boolean position": [{"attachment": True, "data": "aGk="}],
    "not base64": [{"attachment": 0, "data": "!!!!"}],
    "too large": [{"attachment": 0, "data": "A" * (30 * 1024 * 1024)}],
    "twice": [{"attachment": 0, "data": "aGk="}, {"attachment": 0, "data": "aGk="}],
}


@pytest.mark.parametrize("forged", [*FORGED, *FORGED_FILES])
async def test_a_forged_stored_event_with_a_path_or_bad_files_is_refused(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str, forged: str
) -> None:
    a, member, chat = await replicas("a")
    event: dict[str, Any] = {"channel_id": "chat:mallory", "sender": "mallory", "text": "x"}
    event["attachments"] = FORGED.get(forged, [{"name": "f.txt"}])
    if forged in FORGED_FILES:
        event["files"] = FORGED_FILES[forged]
    admin = await asyncpg.connect(member.dsn)
    try:
        await admin.execute(
            "INSERT INTO cluster_inbox (session_id, event, origin, reply_to) "
            "VALUES ('forged', $1, 'nobody', NULL)",
            json.dumps(event),
        )
        a.handover.claim("forged")  # type: ignore[union-attr]
        await until(lambda: _false(stored_events(fresh_postgres_url)), "the event is dropped")
    finally:
        await admin.close()
    assert not [r for r in answering.requests if r.path.endswith("/chat/completions")]
    assert chat.sent["chat:mallory"] == []
    assert chat.media_dir is not None
    assert not (chat.media_dir / "handed-over").exists()  # nothing written either
    await chat.say("alice", "and now?")  # the session's drain goes on with others
    assert (await chat.answer("alice")).text == "answer to and now?"


def test_only_regular_files_under_the_channels_media_dir_travel(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "chat").mkdir(parents=True)
    (media / "chat" / "ok.txt").write_bytes(b"ok")
    (media / "chat" / "big.bin").write_bytes(b"x" * 11)
    (media / "chat" / "link").symlink_to("/etc/passwd")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"no")

    def packed(path: Path | str, media_dir: Path | None = media) -> dict[str, Any] | None:
        file = Attachment(name="f", path=str(path))
        event = ChannelEvent(channel_id="c:1", sender="u", text="t", attachments=[file])
        return pack(event, media_dir, 10)

    stored = packed(media / "chat" / "ok.txt")
    assert stored is not None
    assert stored["files"] == [{"attachment": 0, "data": "b2s="}]
    assert stored["attachments"][0]["path"] is None
    for refused in (
        outside,
        "/etc/passwd",
        media / "chat" / ".." / ".." / "outside.txt",
        media / "chat" / "link",
        media / "chat" / "big.bin",  # over the channel's limit
        media / "chat" / "missing",
        media / "chat",
    ):
        assert packed(refused) is None, refused
    assert packed(media / "chat" / "ok.txt", None) is None  # a channel that names no media dir


async def test_a_file_a_handed_over_turn_sends_travels_as_its_bytes(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str, tmp_path: Path
) -> None:
    # Replica a runs the turn, b holds the connection: b cannot open a's outbox, so the file
    # a tool wrote there reaches b as its bytes; the host files it named never leave a.
    hostile = attachment_tool(tmp_path)
    answering.reply_tool_calls([(hostile.wire_name, {})])
    answering.reply_text("here are the files")
    b_chat = await _handed_to(replicas, fresh_postgres_url, "attach them", hostile.tool)
    answer = await b_chat.answer("alice")
    [sent] = answer.attachments
    assert (sent.name, sent.path) == ("chart.png", None)
    assert base64.b64decode(sent.data or "") == ALLOWED
    everything = "".join(m.model_dump_json() for m in b_chat.sent["chat:alice"])
    assert not [s for s in hostile.secrets if base64.b64encode(s).decode()[:24] in everything]
    assert answer.text.count("was not sent") == len(HOSTILE_NAMES)


def test_inlined_refuses_what_screen_would_and_files_over_the_limit(tmp_path: Path) -> None:
    from openpista.files import turn_output_dir

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENPISTA_HOME", str(tmp_path / "home"))
        outbox = turn_output_dir("s")
        (outbox / "small.txt").write_bytes(b"small")
        (outbox / "large.bin").write_bytes(b"x" * 101)
        answer = Answer(
            session_id="s",
            text="files",
            attachments=[
                Attachment(name="small.txt", path=str(outbox / "small.txt")),
                Attachment(name="large.bin", path=str(outbox / "large.bin")),
                Attachment(name="passwd", path="/etc/passwd"),
                Attachment(name="inline.txt", data=base64.b64encode(b"inline").decode()),
            ],
        )
        sent = inlined(answer, 100)
    assert isinstance(sent, Answer)
    assert [(a.name, a.path, a.data) for a in sent.attachments] == [
        ("small.txt", None, base64.b64encode(b"small").decode()),
        ("inline.txt", None, base64.b64encode(b"inline").decode()),
    ]
    assert sent.text.count("was not sent") == 2


class Gates:
    """A ``test.gate`` tool whose call waits until the test opens its session's gate: the
    message ``wait`` runs it (then is answered ``done``), any other is answered at once."""

    def __init__(self, emulator: LlmEmulator, *gateways: Gateway) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.opened: dict[str, asyncio.Event] = {}

        @tool("test.gate")
        async def gate() -> str:
            """Wait for the test."""
            turn = current_turn()
            session = turn.session_id if turn else ""
            self._event(self.started, session).set()
            await self._event(self.opened, session).wait()
            return "opened"

        for gateway in gateways:
            gateway.runtime.toolbox.tools.register(gate)

        def reply(body: dict[str, Any]) -> Reply | str:
            last = body["messages"][-1]
            if last["role"] != "user":
                return "done"
            if last["content"] == "wait":
                return ToolCallsReply([("test_gate", {})])
            return f"answer to {last['content']}"

        emulator.default_reply = reply

    @staticmethod
    def _event(events: dict[str, asyncio.Event], session: str) -> asyncio.Event:
        return events.setdefault(session, asyncio.Event())

    async def running(self, session: str) -> None:
        """Return once the turn of ``session`` waits at its gate."""
        await asyncio.wait_for(self._event(self.started, session).wait(), WAIT)

    def open(self, session: str) -> None:
        self._event(self.opened, session).set()


async def test_a_message_reaching_a_busy_replica_runs_at_once_on_one_with_a_free_slot(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str
) -> None:
    (a, a_member, a_chat), (b, _, _) = (
        await replicas("a", slots=1),
        await replicas("b", slots=1),
    )
    gates = Gates(answering, a, b)
    await a_chat.say("alice", "wait")  # a's one turn slot is alice's now
    alice = await a.session_for("chat:alice")
    await gates.running(alice)
    assert await _holds(a_member, alice)
    await a_chat.say("bob", "hello")  # b is idle: b runs it, a's connection gets the answer
    answer = await a_chat.answer("bob")
    assert answer.text == "answer to hello"
    assert a_chat.texts("alice") == []  # alice's turn still runs on a
    gates.open(alice)
    assert (await a_chat.answer("alice")).text == "done"
    await until(lambda: _false(stored_events(fresh_postgres_url)), "both are deleted")
    assert (a_chat.texts("alice"), a_chat.texts("bob")) == (["done"], ["answer to hello"])


async def test_a_sessions_next_message_waits_for_a_slot_without_its_lease_and_runs_where_one_frees(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str
) -> None:
    (a, a_member, a_chat), (b, b_member, b_chat) = (
        await replicas("a", slots=1),
        await replicas("b", slots=1),
    )
    gates = Gates(answering, a, b)
    await b_chat.say("dave", "wait")  # b is busy
    dave = await b.session_for("chat:dave")
    await gates.running(dave)
    await a_chat.say("alice", "wait")  # a is busy
    alice = await a.session_for("chat:alice")
    await gates.running(alice)
    await a_chat.say("alice", "hello")  # after alice's turn, on a
    await until(lambda: _count(stored_events(fresh_postgres_url), 3), "alice's next is stored")
    await a_chat.say("bob", "wait")  # waits for a's slot: b has none free either
    bob = await a.session_for("chat:bob")
    await until(lambda: _count(stored_events(fresh_postgres_url), 4), "bob's is stored")
    gates.open(alice)  # a's slot is bob's turn: alice's next lets her lease go
    assert (await a_chat.answer("alice")).text == "done"
    await gates.running(bob)
    assert await _holds(a_member, bob)
    assert not await _holds(a_member, alice)
    gates.open(dave)  # b's slot frees: alice's next runs there, while bob's turn runs on a
    assert (await b_chat.answer("dave")).text == "done"
    assert (await a_chat.answer("alice")).text == "answer to hello"
    assert a_chat.texts("bob") == []
    assert await _holds(a_member, bob)
    gates.open(bob)
    assert (await a_chat.answer("bob")).text == "done"
    await until(lambda: _false(stored_events(fresh_postgres_url)), "all are deleted")
    assert a_chat.texts("alice") == ["done", "answer to hello"]  # once each, in order
    assert b_chat.texts("alice") == []
    assert not await _holds(b_member, alice)


async def _count(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


@pytest.mark.parametrize(
    "payload", ["", "not json", "42", '["s"]', "[" * 3900 + "]" * 3900, '"' + "x" * 7000 + '"']
)
async def test_a_hostile_offer_is_dropped_and_the_replica_serves_on(
    replicas: Start, answering: LlmEmulator, fresh_postgres_url: str, payload: str
) -> None:
    _, member, chat = await replicas("a", slots=1)
    admin = await asyncpg.connect(member.dsn)
    try:  # a session nobody stored anything for is offered too: nothing to run
        await admin.execute("SELECT pg_notify('openpista_offered', $1)", payload)
        await admin.execute("SELECT pg_notify('openpista_offered', $1)", '"no such session"')
    finally:
        await admin.close()
    await chat.say("alice", "hello")
    assert (await chat.answer("alice")).text == "answer to hello"
    assert member.connected
    await until(lambda: _false(stored_events(fresh_postgres_url)), "it is deleted")


async def _claimed(handover: Handover, session: str) -> bool:
    """Whether a claim of ``session`` reached its drainer here (which then looks again)."""
    return session in handover._again


async def test_a_message_stored_while_its_drainer_looks_for_the_last_time_runs_without_the_sweep(
    replicas: Start, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_handover, "LEFTOVER_AFTER", 3600.0)  # no sweep runs it
    a, _, chat = await replicas("a")
    handover = a.handover
    assert handover is not None
    alice = await a.session_for("chat:alice")
    looked = handover._pending
    hooked: list[bool] = []

    async def pending(session_id: str) -> bool:
        found = await looked(session_id)  # her first is over: nothing stored, it seems...
        if not hooked:
            hooked.append(found)  # ... when her next is stored and claimed here
            await chat.say("alice", "second")
            await until(lambda: _claimed(handover, alice), "the second is claimed")
        return found

    monkeypatch.setattr(handover, "_pending", pending)
    await chat.say("alice", "first")
    assert (await chat.answer("alice")).text == "answer to first"
    assert (await chat.answer("alice")).text == "answer to second"
    assert hooked == [False]
    await until(lambda: _false(stored_events(fresh_postgres_url)), "both are deleted")
    assert chat.texts("alice") == ["answer to first", "answer to second"]  # once each


async def test_a_message_stored_while_its_lease_is_refused_runs_once_its_holder_let_go(
    replicas: Start, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_handover, "LEFTOVER_AFTER", 3600.0)  # no sweep runs it
    (a, a_member, chat), (_, b_member, _) = await replicas("a"), await replicas("b")
    handover = a.handover
    assert handover is not None
    alice = await a.session_for("chat:alice")
    assert await b_member.try_acquire(alice)  # a turn of alice's runs on b
    tried = a_member.try_acquire
    refused: list[bool] = []

    async def try_acquire(session_id: str) -> bool:
        taken = await tried(session_id)
        if not refused:
            refused.append(taken)
            # b's turn ends and b looks at the inbox for the last time (nothing stored),
            # then her message is stored here and claimed while a's answer is on its way.
            await b_member.release(alice)
            assert not await _true(stored_events(fresh_postgres_url))
            await chat.say("alice", "hello")
            await until(lambda: _claimed(handover, alice), "the message is claimed")
        return taken

    monkeypatch.setattr(a_member, "try_acquire", try_acquire)
    handover.claim(alice)  # a drains alice: b holds her lease
    assert (await chat.answer("alice")).text == "answer to hello"
    assert refused == [False]
    await until(lambda: _false(stored_events(fresh_postgres_url)), "it is deleted")
    assert chat.texts("alice") == ["answer to hello"]
