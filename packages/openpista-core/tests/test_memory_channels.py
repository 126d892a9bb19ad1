"""Channel -> session bindings and the tool-decision audit trail, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from openpista.memory import (
    MemoryStore,
    MemoryStoreError,
    SessionNotFoundError,
    ToolDecision,
    alembic_config,
)
from openpista.memory.tables import UTCDateTime
from openpista.models import Message
from openpista_testing.memory import (
    bound_session,
    database,
    new_session,
    schema_revision,
    upgrade_database,
)

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def table_names(url: str) -> set[str]:
    async with database(url) as engine, engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


# -- schema ----------------------------------------------------------------------------------


async def test_head_has_the_new_tables(store: MemoryStore, database_url: str) -> None:
    assert await schema_revision(database_url) == HEAD
    assert {"channel_sessions", "tool_decisions"} <= await table_names(database_url)


async def test_upgrade_from_0002_keeps_data_and_adds_tables(database_url: str) -> None:
    await upgrade_database(database_url, "0002")
    stamp = datetime(2025, 6, 7, 8, 9, 10, 111213, tzinfo=UTC)
    sessions = sa.table(
        "sessions",
        sa.column("id", sa.String),
        sa.column("title", sa.String),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    messages = sa.table(
        "messages",
        sa.column("session_id", sa.String),
        sa.column("role", sa.String),
        sa.column("content", sa.Text),
        sa.column("created_at", UTCDateTime()),
    )
    async with database(database_url) as engine, engine.begin() as conn:
        tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert "channel_sessions" not in tables
        await conn.execute(
            sa.insert(sessions).values(
                id="old", title="from 0002", created_at=stamp, updated_at=stamp
            )
        )
        await conn.execute(
            sa.insert(messages).values(
                session_id="old", role="user", content="kept", created_at=stamp
            )
        )

    async with await MemoryStore.open(database_url) as store:
        assert await schema_revision(database_url) == HEAD
        info = await store.get_session("old")
        assert info is not None
        assert (info.title, info.created_at, info.message_count) == ("from 0002", stamp, 1)
        assert await store.load_messages("old") == [
            Message(role="user", content="kept", created_at=stamp)
        ]
        assert await bound_session(store, "telegram:1") is None
        await store.bind_channel("telegram:1", "old")
        assert await bound_session(store, "telegram:1") == "old"
        await store.record_decision("old", "telegram:1", "system.run", {}, "allow", "policy")
        assert [d.tool for d in await store.list_decisions("old")] == ["system.run"]
        info = await store.get_session("old")
        assert info is not None
        assert info.title == "from 0002"


async def test_downgrade_to_0002_drops_only_the_new_tables(
    store: MemoryStore, database_url: str
) -> None:
    await store.bind_channel("web:a", "s")
    await store.append_message("s", Message(role="user", content="hello"))

    def downgrade(conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")

    async with database(database_url) as engine, engine.begin() as conn:
        await conn.run_sync(downgrade)
    assert await schema_revision(database_url) == "0002"
    tables = await table_names(database_url)
    assert "channel_sessions" not in tables
    assert "tool_decisions" not in tables
    assert [m.content for m in await store.load_messages("s")] == ["hello"]

    async with await MemoryStore.open(database_url) as reopened:
        assert await schema_revision(database_url) == HEAD
        assert await bound_session(reopened, "web:a") is None  # the binding went too
        assert len(await reopened.load_messages("s")) == 1


# -- channel bindings -------------------------------------------------------------------------


async def test_bind_creates_the_session_and_is_persisted(database_url: str) -> None:
    async with await MemoryStore.open(database_url) as store:
        assert await bound_session(store, "telegram:42") is None
        await store.bind_channel("telegram:42", "s1")
        assert await bound_session(store, "telegram:42") == "s1"
        info = await store.get_session("s1")
        assert info is not None
        assert info.message_count == 0
    async with await MemoryStore.open(database_url) as store:
        assert await bound_session(store, "telegram:42") == "s1"


async def test_rebinding_moves_the_channel_and_keeps_sessions(store: MemoryStore) -> None:
    await store.start_turn("existing", Message(role="user", content="titled"))
    await store.bind_channel("tui:me", "first")
    await store.bind_channel("tui:me", "existing")
    await store.bind_channel("web:other", "existing")  # two chats may share a session
    assert await bound_session(store, "tui:me") == "existing"
    assert await bound_session(store, "web:other") == "existing"
    info = await store.get_session("existing")
    assert info is not None
    assert (info.title, info.message_count) == ("titled", 1)
    assert await store.get_session("first") is not None


async def test_concurrent_binds_of_one_channel_do_not_fail(store: MemoryStore) -> None:
    await asyncio.gather(*(store.bind_channel("web:race", f"s{i}") for i in range(10)))
    assert await bound_session(store, "web:race") in {f"s{i}" for i in range(10)}
    assert len(await store.list_sessions()) == 10


async def test_ensure_channel_binds_only_once(store: MemoryStore) -> None:
    assert await store.ensure_channel("cli:me", "first") == "first"
    assert await store.ensure_channel("cli:me", "second") == "first"
    assert await bound_session(store, "cli:me") == "first"
    assert await store.get_session("second") is None  # not created for nothing
    await new_session(store, "existing")
    assert await store.ensure_channel("cli:other", "existing") == "existing"
    with pytest.raises(MemoryStoreError, match="channel id"):
        await store.ensure_channel("", "s")


async def test_concurrent_ensures_of_one_channel_agree(database_url: str) -> None:
    async with (
        await MemoryStore.open(database_url) as one,
        await MemoryStore.open(database_url) as two,
    ):
        results = await asyncio.gather(
            *((one if i % 2 else two).ensure_channel("web:race", f"s{i}") for i in range(12))
        )
        assert len(set(results)) == 1
        assert await bound_session(one, "web:race") == results[0]
        assert [s.id for s in await one.list_sessions()] == [results[0]]


async def test_deleting_a_session_removes_its_bindings_and_decisions(
    store: MemoryStore, database_url: str
) -> None:
    await store.bind_channel("web:a", "s")
    await store.bind_channel("web:b", "kept")
    await store.record_decision("s", "web:a", "system.run", {"command": "ls"}, "allow", "user")
    assert await store.delete_session("s")
    assert await bound_session(store, "web:a") is None
    assert await bound_session(store, "web:b") == "kept"
    async with database(database_url) as engine, engine.connect() as conn:
        left = await conn.scalar(sa.text("SELECT count(*) FROM tool_decisions"))
    assert left == 0


@pytest.mark.parametrize(
    ("channel_id", "complaint"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 256, "limit is 255"),
        ("telegram:\n1", "control characters"),
        ("bad\x00", "control characters"),
        ("lone \ud800 surrogate", "not valid Unicode"),
        (42, "must be a string"),
    ],
)
async def test_bad_channel_ids_are_refused(
    store: MemoryStore, channel_id: Any, complaint: str
) -> None:
    with pytest.raises(MemoryStoreError, match=complaint):
        await store.bind_channel(channel_id, "s")
    with pytest.raises(MemoryStoreError, match="channel id"):
        await store.ensure_channel(channel_id, "s")
    with pytest.raises(MemoryStoreError, match="channel id"):
        await store.record_decision("s", channel_id, "t", {}, "allow", "policy")
    assert await store.get_session("s") is None  # refused before anything was written


async def test_bad_session_id_is_refused_by_bind(store: MemoryStore) -> None:
    with pytest.raises(MemoryStoreError, match="session id"):
        await store.bind_channel("web:a", "")
    assert await bound_session(store, "web:a") is None


async def test_longest_channel_id_is_accepted(store: MemoryStore) -> None:
    channel = "c" * 255
    await store.bind_channel(channel, "s")
    assert await bound_session(store, channel) == "s"


# -- tool decisions ---------------------------------------------------------------------------


async def test_decisions_are_listed_oldest_first_exactly(store: MemoryStore) -> None:
    await new_session(store, "s")
    await new_session(store, "other")
    arguments = {"command": "ls -la ~/café\n", "nested": {"n": [1, 2.5, None, True]}, "z": "\x00"}
    first = await store.record_decision(
        "s", "telegram:1", "system.run", arguments, "allow", "policy", "rule 1 (tool='*')"
    )
    await store.record_decision("other", "telegram:2", "browser.open", {}, "deny", "policy")
    second = await store.record_decision(
        "s", "telegram:1", "system.run", {"command": "rm -rf ~"}, "deny", "user", "denied (ab12cd)"
    )
    third = await store.record_decision("s", "telegram:1", "screen.click", {}, "deny", "timeout")
    listed = await store.list_decisions("s")
    assert listed == [first, second, third]
    assert all(isinstance(d, ToolDecision) for d in listed)
    assert first.id < second.id < third.id
    assert first.created_at < second.created_at < third.created_at
    assert all(d.created_at.utcoffset() == timedelta(0) for d in listed)
    assert (first.arguments, first.action, first.decided_by, first.detail) == (
        arguments,
        "allow",
        "policy",
        "rule 1 (tool='*')",
    )
    assert (third.detail, third.channel_id) == ("", "telegram:1")
    with pytest.raises(AttributeError):
        first.action = "deny"  # type: ignore[misc]
    assert await store.list_decisions("other") != []


async def test_decisions_survive_reopening(database_url: str) -> None:
    async with await MemoryStore.open(database_url) as store:
        await store.bind_channel("web:x", "s")
        recorded = await store.record_decision(
            "s", "web:x", "system.run", {"command": "date"}, "allow", "user", "approved (abc123)"
        )
    async with await MemoryStore.open(database_url) as store:
        assert await store.list_decisions("s") == [recorded]


async def test_decisions_need_an_existing_session(store: MemoryStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.record_decision("ghost", "web:a", "system.run", {}, "allow", "policy")
    with pytest.raises(SessionNotFoundError):
        await store.list_decisions("ghost")
    assert await store.get_session("ghost") is None


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"action": "ask"}, "decision action must be one of allow, deny"),
        ({"decided_by": "admin"}, "decided_by must be one of policy, user, timeout"),
        ({"tool": ""}, "tool name must not be empty"),
        ({"tool": "t" * 256}, "limit is 255"),
        ({"arguments": ["not", "a", "dict"]}, "must be a dict"),
        ({"arguments": {"x": object()}}, "not storable as JSON"),
        ({"arguments": {"x": float("nan")}}, "not storable as JSON"),
        ({"detail": "nul \x00"}, "NUL"),
        ({"detail": None}, "must be a string"),
    ],
)
async def test_bad_decisions_are_refused(
    store: MemoryStore, change: dict[str, Any], complaint: str
) -> None:
    await new_session(store, "s")
    values: dict[str, Any] = {
        "session_id": "s",
        "channel_id": "web:a",
        "tool": "system.run",
        "arguments": {},
        "action": "allow",
        "decided_by": "policy",
        "detail": "",
    }
    with pytest.raises(MemoryStoreError, match=complaint):
        await store.record_decision(**(values | change))
    assert await store.list_decisions("s") == []
