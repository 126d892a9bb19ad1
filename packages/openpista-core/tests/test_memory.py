"""The conversation memory, on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from openpista.memory import (
    MemoryStore,
    MemoryStoreError,
    SessionNotFoundError,
    alembic_config,
    create_engine_for,
    expand_database_url,
)
from openpista.memory.schema import HEAD_REVISION
from openpista.memory.store import INTERRUPTED, title_from
from openpista.memory.tables import VERSION_TABLE, UTCDateTime
from openpista.models import Message, ToolCall, ToolResult
from openpista_testing.memory import database, new_session, schema_revision, upgrade_database
from openpista_testing.postgres import PostgresServer

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/memory.db"


def conversation() -> list[Message]:
    """A turn with everything a session holds: unicode, tool calls, tool results."""
    return [
        Message(role="system", content="You are openpista."),
        Message(role="user", content="안녕하세요 — list files in ~/café 🐍\nmerci\u0301 \u202eabc"),
        Message(
            role="assistant",
            content="",
            tool_calls=[
                ToolCall(
                    id="call_1",
                    name="system.run",
                    arguments={
                        "command": "ls -la ~/café",
                        "zeta": 1,
                        "alpha": {"nested": [1, 2.5, -0.0, 1e-300, None, True, "ü"], "empty": {}},
                        "big": 2**70,
                        "text": 'quote " backslash \\ tab \t newline \n nul \x00',
                    },
                ),
                ToolCall(
                    id="call_2",
                    name="browser.open",
                    arguments={},
                    raw_arguments='{"url": "https://exa',  # the LLM sent broken JSON
                ),
            ],
        ),
        Message(
            role="tool",
            content="",
            tool_result=ToolResult(
                call_id="call_1", name="system.run", output="total 0\n한글.txt\n", is_error=False
            ),
        ),
        Message(
            role="tool",
            tool_result=ToolResult(
                call_id="call_2",
                name="browser.open",
                output="❌ arguments are not JSON",
                is_error=True,
            ),
        ),
        Message(role="assistant", content="Done: one file, 한글.txt."),
    ]


# -- opening, URLs, migrations ------------------------------------------------------------------


def test_expand_database_url_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_database_url("sqlite+aiosqlite:///~/.openpista/memory.db") == (
        f"sqlite+aiosqlite:///{tmp_path}/.openpista/memory.db"
    )
    postgres = "postgresql+asyncpg://me:p%40ss@db.example:5432/openpista"
    assert expand_database_url(postgres) == postgres


async def test_open_expands_home_and_creates_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    async with await MemoryStore.open("sqlite+aiosqlite:///~/.openpista/memory.db") as store:
        await new_session(store, "s")
    assert (tmp_path / ".openpista" / "memory.db").is_file()


async def test_bare_sqlite_url_gets_the_async_driver(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    async with await MemoryStore.open(url) as store:
        await new_session(store, "s")
    assert create_engine_for(url).url.drivername == "sqlite+aiosqlite"
    assert await schema_revision(url) == HEAD


async def test_unusable_urls_get_clear_errors() -> None:
    with pytest.raises(MemoryStoreError, match="in-memory SQLite"):
        await MemoryStore.open("sqlite+aiosqlite://")
    with pytest.raises(MemoryStoreError, match="not a valid database URL") as caught:
        await MemoryStore.open("not a url with secret-password")
    assert "secret-password" not in str(caught.value)


@pytest.mark.postgres
async def test_refused_connection_is_a_clear_error(postgres_server: PostgresServer) -> None:
    # Neither the role nor the database exists: the server refuses the connection.
    url = f"postgresql+asyncpg://nobody:secret@127.0.0.1:{postgres_server.port}/no_such_db"
    with pytest.raises(MemoryStoreError, match="cannot open the memory database") as caught:
        await MemoryStore.open(url)
    assert "secret" not in str(caught.value)


async def test_fresh_database_is_migrated_to_head(store: MemoryStore, database_url: str) -> None:
    assert await schema_revision(database_url) == HEAD

    def describe(conn: sa.Connection) -> tuple[set[str], set[str], set[str]]:
        inspector = sa.inspect(conn)
        columns = {c["name"] for c in inspector.get_columns("sessions")}
        indexes = {i["name"] or "" for i in inspector.get_indexes("messages")}
        indexes |= {i["name"] or "" for i in inspector.get_indexes("sessions")}
        return set(inspector.get_table_names()), columns, indexes

    async with database(database_url) as engine, engine.connect() as conn:
        tables, columns, indexes = await conn.run_sync(describe)
    assert {"sessions", "messages", "budget_limits", VERSION_TABLE} <= tables
    assert {"id", "title", "created_at", "updated_at"} <= columns
    assert {"ix_messages_session_id_id", "ix_sessions_updated_at"} <= indexes


async def test_reopening_a_database_keeps_everything(database_url: str) -> None:
    original = conversation()
    async with await MemoryStore.open(database_url) as store:
        await store.start_turn("s", first := Message(role="user", content="keep this"))
        await store.append_messages("s", original)
    async with await MemoryStore.open(database_url) as store:
        assert await store.load_messages("s") == [first, *original]
        info = await store.get_session("s")
        assert info is not None
        assert (info.title, info.message_count) == ("keep this", len(original) + 1)
    assert await schema_revision(database_url) == HEAD


async def _insert_at_revision_0001(engine: AsyncEngine) -> datetime:
    """Write a session and two messages the way a revision-0001 openpista did."""
    sessions = sa.table(
        "sessions",
        sa.column("id", sa.String),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    messages = sa.table(
        "messages",
        sa.column("session_id", sa.String),
        sa.column("role", sa.String),
        sa.column("content", sa.Text),
        sa.column("tool_calls", sa.JSON),
        sa.column("tool_result", sa.JSON),
        sa.column("created_at", UTCDateTime()),
    )
    stamp = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(sessions).values(id="old", created_at=stamp, updated_at=stamp))
        await conn.execute(
            sa.insert(messages),
            [
                {
                    "session_id": "old",
                    "role": "user",
                    "content": "from the old schema",
                    "tool_calls": None,
                    "tool_result": None,
                    "created_at": stamp,
                },
                {
                    "session_id": "old",
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "c", "name": "system.run", "arguments": {"command": "ls"}}
                    ],
                    "tool_result": None,
                    "created_at": stamp,
                },
            ],
        )
    return stamp


async def test_older_schema_is_upgraded_in_place(database_url: str) -> None:
    await upgrade_database(database_url, "0001")
    engine = create_engine_for(database_url)
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("sessions")}
            )
        assert "title" not in columns
        stamp = await _insert_at_revision_0001(engine)
    finally:
        await engine.dispose()

    async with await MemoryStore.open(database_url) as store:
        assert await schema_revision(database_url) == HEAD
        info = await store.get_session("old")
        assert info is not None
        assert (info.title, info.created_at, info.message_count) == (None, stamp, 2)
        assert await store.load_messages("old") == [
            Message(role="user", content="from the old schema", created_at=stamp),
            Message(
                role="assistant",
                tool_calls=[ToolCall(id="c", name="system.run", arguments={"command": "ls"})],
                created_at=stamp,
            ),
            Message(  # its result was never stored: told interrupted (well_formed)
                role="tool",
                tool_result=ToolResult(
                    call_id="c", name="system.run", output=INTERRUPTED, is_error=True
                ),
                created_at=stamp,
            ),
        ]
        # The new column is usable on old and new rows alike.
        await store.start_turn("old", Message(role="user", content="named after the upgrade"))
        await store.start_turn("new", Message(role="user", content="born with a title"))
        listed = await store.list_sessions()
        assert [(s.id, s.title) for s in listed] == [
            ("new", "born with a title"),
            ("old", "named after the upgrade"),
        ]


async def test_downgrade_and_upgrade_keep_messages(store: MemoryStore, database_url: str) -> None:
    await new_session(store, "s")
    await store.append_messages("s", conversation())
    await store.close()

    def downgrade(conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")

    async with database(database_url) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            count = await conn.scalar(sa.text("SELECT count(*) FROM messages"))
    assert await schema_revision(database_url) == "0001"
    assert count == len(conversation())

    async with await MemoryStore.open(database_url) as reopened:
        assert len(await reopened.load_messages("s")) == len(conversation())
    assert await schema_revision(database_url) == HEAD


async def test_database_from_a_newer_openpista_is_refused(database_url: str) -> None:
    async with await MemoryStore.open(database_url):
        pass
    async with database(database_url) as engine, engine.begin() as conn:
        await conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(MemoryStoreError, match="newer openpista"):
        await MemoryStore.open(database_url)


def test_head_revision_is_alembics_head() -> None:
    # The store skips Alembic when a database is stamped HEAD_REVISION: a new revision must
    # update it, or databases would stay on the previous schema.
    assert HEAD_REVISION == HEAD


def _open_in_new_process(url: str) -> bool:
    """Open the store at ``url`` in a fresh interpreter; whether it imported Alembic."""
    script = (
        "import asyncio, sys\n"
        "from openpista.memory import MemoryStore\n"
        "async def main():\n"
        "    await (await MemoryStore.open(sys.argv[1])).close()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, check=True
    )
    return {"True\n": True, "False\n": False}[done.stdout]


async def test_a_current_database_opens_without_alembic(database_url: str) -> None:
    assert _open_in_new_process(database_url)  # a new database: migrated
    assert await schema_revision(database_url) == HEAD
    assert not _open_in_new_process(database_url)  # at head: one query, no Alembic

    def downgrade(conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")

    async with database(database_url) as engine, engine.begin() as conn:
        await conn.run_sync(downgrade)
    assert _open_in_new_process(database_url)  # behind head: migrated
    assert await schema_revision(database_url) == HEAD


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    async with await MemoryStore.open(sqlite_url(tmp_path)) as store:
        await new_session(store, "s")
    # Connections set up as the store's are (one function configures both).
    async with database(sqlite_url(tmp_path)) as engine, engine.connect() as conn:

        async def pragma(name: str) -> object:
            return (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()

        assert await pragma("journal_mode") == "wal"
        assert await pragma("foreign_keys") == 1
        assert await pragma("synchronous") == 1  # NORMAL: WAL commits survive a process kill
        assert await pragma("busy_timeout") == 30_000
        # WAL is a property of the file, seen by any other program that opens it.
        other = sqlite3.connect(tmp_path / "memory.db")
        try:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            other.close()


# -- sessions -----------------------------------------------------------------------------------


async def test_sessions_are_listed_most_recent_first(store: MemoryStore) -> None:
    await new_session(store, "first")
    await new_session(store, "second")
    await new_session(store, "third")
    first = await store.get_session("first")
    assert first is not None
    assert first.title is None
    assert first.created_at.utcoffset() == timedelta(0)
    assert first.created_at == first.updated_at
    assert first.message_count == 0

    assert await store.get_session("missing") is None
    assert [s.id for s in await store.list_sessions()] == ["third", "second", "first"]
    assert [s.id for s in await store.list_sessions(limit=2)] == ["third", "second"]

    await store.start_turn("first", Message(role="user", content="hi"))
    listed = await store.list_sessions()
    assert [s.id for s in listed] == ["first", "third", "second"]
    assert listed[0].updated_at > first.updated_at
    assert listed[0].created_at == first.created_at
    assert listed[0].message_count == 1

    await store.append_message("second", Message(role="assistant", content="hello"))
    assert [s.id for s in await store.list_sessions()] == ["second", "first", "third"]


async def test_a_session_is_titled_by_its_first_user_message(store: MemoryStore) -> None:
    long = "  Plan   a trip\nto Jeju: flights, a hotel near the beach, and a rental car please  "
    await store.start_turn("s", Message(role="user", content=long))
    await store.start_turn("s", Message(role="user", content="a later question"))
    await store.start_turn("untitled", Message(role="user", content=" \n\t "))
    await store.start_turn("untitled", Message(role="user", content="finally words"))
    # A session made by binding a chat has no title until its first message.
    await new_session(store, "bound")
    titles = {s.id: s.title for s in await store.list_sessions()}
    expected = "Plan a trip to Jeju: flights, a hotel near the beach, and a…"
    assert titles == {"s": expected, "untitled": "finally words", "bound": None}
    assert len(expected) == 60


def test_title_from_text() -> None:
    assert title_from("") is None
    assert title_from("  \n ") is None
    assert title_from(" hello\n\tworld ") == "hello world"
    assert title_from("x" * 60) == "x" * 60
    assert title_from("x" * 61) == "x" * 59 + "…"
    assert title_from("안녕하세요 " * 20) == ("안녕하세요 " * 10).rstrip() + "…"
    # Printed to terminals by `openpista sessions`: no escapes, no bidi overrides.
    assert title_from("\x1b[31mred\x1b[0m\x07 \u202eevil\u202c\u200b\x85x") == "[31mred[0m evil x"
    assert title_from("\x1b\x00\u2066") is None


async def test_missing_sessions(store: MemoryStore) -> None:
    message = Message(role="user", content="lost?")
    with pytest.raises(SessionNotFoundError, match="'nope'"):
        await store.append_message("nope", message)
    with pytest.raises(SessionNotFoundError):
        await store.append_messages("nope", [])
    with pytest.raises(SessionNotFoundError):
        await store.load_messages("nope")
    assert await store.get_session("nope") is None
    assert await store.delete_session("nope") is False
    assert issubclass(SessionNotFoundError, MemoryStoreError)
    assert not issubclass(MemoryStoreError, MemoryError)


async def test_delete_session_removes_its_messages(store: MemoryStore, database_url: str) -> None:
    await new_session(store, "gone")
    await new_session(store, "kept")
    await store.append_messages("gone", conversation())
    await store.append_messages("kept", conversation()[:2])
    assert await store.delete_session("gone") is True
    assert await store.delete_session("gone") is False
    assert await store.get_session("gone") is None
    async with database(database_url) as engine, engine.connect() as conn:
        count = await conn.scalar(sa.text("SELECT count(*) FROM messages"))
    assert count == 2
    # The id can be used again, starting empty.
    await new_session(store, "gone")
    assert await store.load_messages("gone") == []


# -- messages -----------------------------------------------------------------------------------


async def test_round_trip_is_exact(store: MemoryStore) -> None:
    await new_session(store, "s")
    original = conversation()
    await store.append_messages("s", original[:3])
    await store.append_message("s", original[3])
    await store.append_messages("s", original[4:])

    loaded = await store.load_messages("s")
    assert loaded == original
    # Byte for byte as JSON: key order, float spelling, big ints, unicode, escapes.
    assert [m.model_dump_json() for m in loaded] == [m.model_dump_json() for m in original]
    assert list(loaded[2].tool_calls[0].arguments) == ["command", "zeta", "alpha", "big", "text"]
    assert loaded[2].tool_calls[1].raw_arguments == '{"url": "https://exa'
    assert loaded[4].tool_result is not None
    assert loaded[4].tool_result.is_error is True
    for message in loaded:
        assert message.created_at.utcoffset() == timedelta(0)
    info = await store.get_session("s")
    assert info is not None
    assert info.message_count == len(original)


async def test_timestamps_come_back_as_utc(store: MemoryStore) -> None:
    await new_session(store, "s")
    seoul = datetime(2025, 6, 1, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=9)))
    naive = datetime(2025, 6, 1, 0, 30, 0, 654321)
    await store.append_messages(
        "s",
        [
            Message(role="user", content="aware", created_at=seoul),
            Message(role="user", content="naive means UTC", created_at=naive),
        ],
    )
    aware, from_naive = await store.load_messages("s")
    assert aware.created_at == seoul
    assert aware.created_at.tzinfo == UTC
    assert from_naive.created_at == naive.replace(tzinfo=UTC)


async def test_huge_and_odd_content_round_trips(store: MemoryStore) -> None:
    await new_session(store, "s")
    huge = ("0123456789abcdef" * 65_536) + "끝"  # a little over 1 MiB
    odd_arguments = {"lone surrogate": "\ud800", "nul": "a\x00b", "emoji": "🧪" * 1000}
    messages = [  # a call and its result (a result of no call is left out: well_formed)
        Message(role="assistant", tool_calls=[ToolCall(id="c", name="x", arguments=odd_arguments)]),
        Message(
            role="tool", content=huge, tool_result=ToolResult(call_id="c", name="x", output=huge)
        ),
        Message(role="user", content=""),
    ]
    await store.append_messages("s", messages)
    assert await store.load_messages("s") == messages


async def test_bad_input_is_refused_and_history_kept(store: MemoryStore) -> None:
    await new_session(store, "s")
    kept = [Message(role="user", content="kept")]
    await store.append_messages("s", kept)

    for bad_id, reason in [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 256, "256 characters long; the limit is 255"),
        ("tab\there", "control characters"),
    ]:
        with pytest.raises(MemoryStoreError, match=reason):
            await store.start_turn(bad_id, kept[0])
        with pytest.raises(MemoryStoreError, match=reason):
            await store.append_messages(bad_id, kept)
    with pytest.raises(MemoryStoreError, match="must be a string"):
        await store.get_session(42)  # type: ignore[arg-type]  # the mistake under test
    await new_session(store, "y" * 255)
    assert await store.get_session("y" * 255) is not None

    # One bad message in a batch: nothing of the batch is written.
    batch = [
        Message(role="user", content="fine"),
        Message(role="tool", content="binary\x00output"),
        Message(role="user", content="also fine"),
    ]
    with pytest.raises(MemoryStoreError, match="content of message 1 contains a NUL character"):
        await store.append_messages("s", batch)
    with pytest.raises(MemoryStoreError, match="not valid Unicode"):
        await store.append_message("s", Message(role="user", content="half \ud83d"))
    with pytest.raises(MemoryStoreError, match="use append_message for one"):
        await store.append_messages("s", Message(role="user", content="x"))  # type: ignore[arg-type]
    with pytest.raises(MemoryStoreError, match="message 0 is a dict"):
        await store.append_messages("s", [{"role": "user"}])  # type: ignore[list-item]
    with pytest.raises(MemoryStoreError, match="positive integer"):
        await store.list_sessions(limit=0)

    assert await store.load_messages("s") == kept
    assert [s.id for s in await store.list_sessions()] == ["y" * 255, "s"]


async def test_concurrent_appends_to_different_sessions(store: MemoryStore) -> None:
    sessions = [f"session-{n}" for n in range(8)]
    for sid in sessions:
        await new_session(store, sid)

    async def chat(sid: str) -> None:
        for turn in range(15):
            await store.append_messages(
                sid,
                [
                    Message(role="user", content=f"{sid} question {turn}"),
                    Message(role="assistant", content=f"{sid} answer {turn}"),
                ],
            )

    await asyncio.gather(*(chat(sid) for sid in sessions))
    for sid in sessions:
        contents = [m.content for m in await store.load_messages(sid)]
        assert contents == [
            f"{sid} {kind} {turn}" for turn in range(15) for kind in ("question", "answer")
        ]
    assert {s.message_count for s in await store.list_sessions()} == {30}


async def test_two_stores_share_one_database(database_url: str) -> None:
    # Two openers (like two processes) writing at once: the second waits, nothing is lost.
    async with (
        await MemoryStore.open(database_url) as one,
        await MemoryStore.open(database_url) as two,
    ):
        await new_session(one, "a")
        await new_session(two, "b")

        async def write(store: MemoryStore, sid: str) -> None:
            for n in range(20):
                await store.append_message(sid, Message(role="user", content=str(n)))

        await asyncio.gather(write(one, "a"), write(two, "b"), write(one, "b"), write(two, "a"))
        for store in (one, two):
            for sid in ("a", "b"):
                assert len(await store.load_messages(sid)) == 40


async def test_closed_store_refuses_work(database_url: str) -> None:
    store = await MemoryStore.open(database_url)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(MemoryStoreError, match="closed"):
        await store.list_sessions()


async def test_closing_lets_the_queued_writes_finish(database_url: str) -> None:
    store = await MemoryStore.open(database_url)
    await new_session(store, "s")
    writes = [
        asyncio.create_task(store.append_message("s", Message(role="user", content=str(n))))
        for n in range(50)
    ]
    await asyncio.sleep(0)  # every write has started and waits for the database
    await store.close()
    await asyncio.gather(*writes)
    async with await MemoryStore.open(database_url) as reopened:
        contents = [m.content for m in await reopened.load_messages("s")]
    assert sorted(contents, key=int) == [str(n) for n in range(50)]  # PostgreSQL: any order


# -- durability ---------------------------------------------------------------------------------

WRITER = """
import asyncio, sys
from openpista.memory import MemoryStore
from openpista.models import Message
from openpista_testing.memory import new_session

async def main(url: str) -> None:
    async with await MemoryStore.open(url) as store:
        await new_session(store, "stream")
        batch = 0
        while True:
            await store.append_messages(
                "stream", [Message(role="user", content=f"{batch}-{part}") for part in range(3)]
            )
            print(batch, flush=True)  # only after the commit returned
            batch += 1

asyncio.run(main(sys.argv[1]))
"""


async def test_sigkill_mid_stream_loses_no_committed_message(
    database_url: str, tmp_path: Path
) -> None:
    stderr_path = tmp_path / "writer.stderr"
    with stderr_path.open("wb") as stderr:
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            database_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert writer.stdout is not None
    committed = -1
    try:
        # A safety net against a hung writer, not a timing assertion.
        async with asyncio.timeout(120):
            while committed < 40:
                line = await writer.stdout.readline()
                if not line:
                    pytest.fail(f"writer exited early:\n{stderr_path.read_text()}")
                committed = int(line)
    finally:
        writer.kill()  # SIGKILL, while it is in the middle of its next batches
        await writer.wait()
    assert writer.returncode == -9

    async with await MemoryStore.open(database_url) as store:
        contents = [m.content for m in await store.load_messages("stream")]
    # Every batch that was reported committed is there, in order; a batch that was being
    # written at the kill is there completely or not at all.
    assert len(contents) % 3 == 0
    batches = len(contents) // 3
    assert batches >= committed + 1
    assert contents == [f"{batch}-{part}" for batch in range(batches) for part in range(3)]

    if database_url.startswith("sqlite"):
        check = sqlite3.connect(tmp_path / "memory.db")
        try:
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            check.close()


# -- the PostgreSQL helper ----------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_server_cleans_up_after_itself() -> None:
    with PostgresServer() as server:
        data_dir = server._tmp
        assert data_dir is not None
        assert data_dir.is_dir()
        url = server.url
        assert url.startswith("postgresql+asyncpg://openpista@127.0.0.1:")
        assert server.create_database("extra").endswith("/extra")
    assert not data_dir.exists()
    assert server.port == 0
    assert os.path.basename(url) == "openpista"
