"""Export and import of a session, notes, and purging everything about a person or a chat,
on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from openpista.memory import MemoryStore, MemoryStoreError, SearchScope, Speaker
from openpista.memory.notes import NOTE_MAX_LENGTH, NOTES_BUDGET, notes_prompt
from openpista.memory.transfer import (
    SessionDocument,
    read_session,
    session_json,
    session_markdown,
)
from openpista.models import Message, ToolCall, ToolResult
from openpista_testing.memory import database, upgrade_database


def _conversation() -> list[Message]:
    return [
        Message(role="user", content="list files in ~/café 🐍"),
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="c1", name="system.run", arguments={"command": "ls ```"})],
        ),
        Message(
            role="tool",
            tool_result=ToolResult(call_id="c1", name="system.run", output="a.txt\n```\nb"),
        ),
        Message(role="assistant", content="Two files."),
    ]


async def _said(store: MemoryStore, session: str, chat: str, sender: str, text: str) -> None:
    speaker = Speaker.of(chat, sender)
    await store.start_turn(session, Message(role="user", content=text), speaker=speaker)


async def test_export_import_round_trip(store: MemoryStore) -> None:
    first, *rest = _conversation()
    await store.start_turn("orig", first)
    await store.append_messages("orig", rest)
    exported = await store.export_session("orig")
    data = json.loads(json.dumps(session_json(exported)))  # through text, as a file
    document = read_session(data)
    assert document.messages == exported.messages
    with pytest.raises(MemoryStoreError, match="exists already"):
        await store.import_session(document)
    assert await store.import_session(document, "copy") == "copy"
    assert await store.load_messages("copy") == await store.load_messages("orig")
    copy = await store.get_session("copy")
    assert copy is not None
    assert (copy.title, copy.created_at) == ("list files in ~/café 🐍", exported.created_at)
    assert {hit.session_id for hit in await store.search("files")} == {"orig", "copy"}
    with pytest.raises(MemoryStoreError, match="no such session"):
        await store.export_session("missing")


def test_markdown_keeps_code_blocks_closed() -> None:
    from datetime import UTC, datetime

    from openpista.memory.transfer import SessionDocument

    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    text = session_markdown(SessionDocument("s", "Files", stamp, stamp, _conversation()))
    assert text.startswith("# Files\n")
    assert "## user · 2026-" in text
    assert "````\na.txt\n```\nb\n````" in text  # a longer fence than the output's
    assert "Tool call `system.run`" in text


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], "not an openpista session export"),
        ({"format": "other"}, "not an openpista session export"),
        ({"format": "openpista-session", "version": 99}, "version 99"),
        (
            {
                "format": "openpista-session",
                "version": 1,
                "id": "x",
                "title": None,
                "created_at": "2026-01-01T00:00:00+00:00",
                "updated_at": "2026-01-01T00:00:00+00:00",
                "messages": [{"role": "wizard", "content": "hi"}],
            },
            "messages.0.role",
        ),
    ],
)
def test_unreadable_exports_are_refused(data: object, error: str) -> None:
    with pytest.raises(MemoryStoreError, match=error):
        read_session(data)


async def test_an_import_is_checked_before_anything_is_written(store: MemoryStore) -> None:
    await store.start_turn("orig", Message(role="user", content="fine"))
    document = await store.export_session("orig")
    bad = type(document)(
        "evil\x00id", None, document.created_at, document.updated_at, document.messages
    )
    with pytest.raises(MemoryStoreError, match="control characters"):
        await store.import_session(bad)
    nul = [Message(role="user", content="a\x00b")]
    with pytest.raises(MemoryStoreError, match="NUL"):
        await store.import_session(
            type(document)("nul", None, document.created_at, document.updated_at, nul)
        )
    assert await store.get_session("nul") is None


async def test_notes_are_per_person_and_bounded(store: MemoryStore) -> None:
    first = await store.remember("telegram:1", "  likes   green tea ")
    assert first.text == "likes green tea"
    await store.remember("telegram:2", "likes coffee")
    assert [n.text for n in await store.notes_of("telegram:1")] == ["likes green tea"]
    assert await store.forget("telegram:2", first.id) == 0  # not theirs
    assert await store.forget("telegram:1", first.id) == 1
    for bad, error in (
        ("", "must not be empty"),
        ("x" * (NOTE_MAX_LENGTH + 1), f"limit is {NOTE_MAX_LENGTH}"),
        ("nul\x00", "NUL"),
    ):
        with pytest.raises(MemoryStoreError, match=error):
            await store.remember("telegram:1", bad)
    for person in ("nobody", "telegram:", "", "telegram:\x1b[31m"):
        with pytest.raises(MemoryStoreError):
            await store.remember(person, "x")
    with pytest.raises(MemoryStoreError, match="positive number"):
        await store.forget("telegram:1", 0)


def test_the_prompt_keeps_the_newest_notes_within_the_budget() -> None:
    from datetime import UTC, datetime

    from openpista.memory.notes import Note

    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    notes = [Note(i, "t:1", f"note number {i} " + "x" * 300, stamp) for i in range(20, 0, -1)]
    prompt = notes_prompt(notes)
    assert len(prompt) <= NOTES_BUDGET + 100
    assert "[20] note number 20" in prompt
    assert "[1] note number 1 " not in prompt
    assert prompt.index("[19]") < prompt.index("[20]")  # oldest of those shown first
    assert notes_prompt([]) == ""


async def test_purge_deletes_a_person_and_keeps_shared_conversations(store: MemoryStore) -> None:
    await _said(store, "ann-private", "telegram:1", "1", "ann alone: my secret plan")
    await store.bind_channel("telegram:1", "ann-private")
    await _said(store, "group", "telegram:-100", "1", "ann in the group: plan")
    await _said(store, "group", "telegram:-100", "2", "bob in the group: plan")
    await _said(store, "bob-private", "telegram:2", "2", "bob alone: plan")
    await store.remember("telegram:1", "ann's note")
    await store.remember("telegram:2", "bob's note")

    assert await store.purge("telegram:1") == (1, 1, 1)
    assert await store.get_session("ann-private") is None
    assert await store.notes_of("telegram:1") == []
    assert [n.text for n in await store.notes_of("telegram:2")] == ["bob's note"]
    assert await store.get_session("group") is not None
    assert await store.get_session("bob-private") is not None
    assert await store.search("plan", SearchScope(person="telegram:1")) == []
    assert {h.session_id for h in await store.search("plan", SearchScope(person="telegram:2"))} == {
        "group",
        "bob-private",
    }
    assert await store.search("secret") == []
    # A group chat purged: its sessions go, its members' own chats stay.
    assert await store.purge("telegram:-100") == (1, 0, 0)
    assert await store.get_session("group") is None
    assert await store.get_session("bob-private") is not None
    assert await store.purge("telegram:404") == (0, 0, 0)


async def _group_with_senders(store: MemoryStore) -> None:
    await _said(store, "group", "telegram:-100", "1", "ann: the locker code is 4711")
    await store.append_messages("group", [Message(role="assistant", content="Noted, ann.")])
    await _said(store, "group", "telegram:-100", "2", "bob: and mine is 9000")


async def test_export_and_import_carry_each_messages_sender(store: MemoryStore) -> None:
    await _group_with_senders(store)
    exported = await store.export_session("group")
    assert exported.senders == {0: "telegram:1", 2: "telegram:2"}
    data = json.loads(json.dumps(session_json(exported)))
    assert [m.get("sender") for m in data["messages"]] == ["telegram:1", None, "telegram:2"]
    assert "sender" not in data["messages"][1]  # the agent's message names nobody
    document = read_session(data)
    assert document.senders == exported.senders
    markdown = session_markdown(document)
    assert "## user `telegram:1` · " in markdown
    assert "## assistant · " in markdown
    assert "## user `telegram:2` · " in markdown

    assert await store.import_session(document, "copy") == "copy"
    assert (await store.export_session("copy")).senders == exported.senders
    # The restored senders let purge remove ann's words from the copy too.
    assert await store.purge("telegram:1") == (0, 0, 2)
    remaining = [m.content for m in await store.load_messages("copy")]
    assert remaining == ["Noted, ann.", "bob: and mine is 9000"]
    assert await store.search("4711") == []


async def test_an_export_without_senders_still_imports(store: MemoryStore) -> None:
    await _group_with_senders(store)
    data = session_json(await store.export_session("group"))
    for message in data["messages"]:
        message.pop("sender", None)
    data["messages"][1]["sender"] = None  # written as null: no sender either
    document = read_session(json.loads(json.dumps(data)))
    assert document.senders == {}
    assert "## user · " in session_markdown(document)
    await store.import_session(document, "old")
    assert (await store.export_session("old")).senders == {}
    assert await store.purge("telegram:1") == (0, 0, 1)  # only the original's message
    assert len(await store.load_messages("old")) == 3


@pytest.mark.parametrize(
    ("index", "sender", "error"),
    [
        (0, "nobody", "sender of message 0: a person is KIND:SENDER"),
        (0, "telegram:", "sender of message 0: a person is KIND:SENDER"),
        (0, "", "sender of message 0: a person is KIND:SENDER"),
        (0, "telegram:\x1b[31mred", "sender of message 0: .*control characters"),
        (0, "telegram:a\x00b", "sender of message 0"),
        (0, 7, "sender of message 0: .* not int"),
        (0, ["telegram:1"], "sender of message 0: .* not list"),
        (0, {"person": "telegram:1"}, "sender of message 0: .* not dict"),
        (
            0,
            "telegram:" + "9" * 100_000,
            "sender of message 0: .*at most 255 characters, not 100009",
        ),
        (
            1,
            "telegram:1",
            "sender of message 1: only a user message has a sender, this one is assistant",
        ),
    ],
)
def test_a_hostile_sender_is_refused(index: int, sender: object, error: str) -> None:
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    messages = [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
    data = session_json(SessionDocument("s", None, stamp, stamp, messages, {0: "telegram:1"}))
    assert read_session(data).senders == {0: "telegram:1"}
    data["messages"][index]["sender"] = sender
    with pytest.raises(MemoryStoreError, match=f"^invalid session export: {error}") as caught:
        read_session(json.loads(json.dumps(data)))
    assert len(str(caught.value)) < 300
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("senders", "error"),
    [
        ({5: "telegram:1"}, "sender of message 5: there is no such message"),
        ({-1: "telegram:1"}, "sender of message -1: there is no such message"),
        ({1: "telegram:1"}, "only a user message has a sender"),
        ({0: "telegram:\x1b]0;x"}, "control characters"),
        ({"0": "telegram:1"}, "keyed by a message index, not a str"),
        ({True: "telegram:1"}, "keyed by a message index, not a bool"),
    ],
)
async def test_an_import_checks_the_senders_before_writing(
    store: MemoryStore, senders: dict[Any, Any], error: str
) -> None:
    await _group_with_senders(store)
    exported = await store.export_session("group")
    bad = SessionDocument(
        "bad", None, exported.created_at, exported.updated_at, exported.messages, senders
    )
    with pytest.raises(MemoryStoreError, match=error):
        await store.import_session(bad)
    assert await store.get_session("bad") is None


async def test_the_migration_names_the_writer_of_older_messages(database_url: str) -> None:
    # A database left at revision 0015: user messages without a sender, in a private
    # session (one person recorded), a group session (two) and a session nobody recorded.
    await upgrade_database(database_url, "0015")
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    people = [("ann", "telegram:1", "telegram:1"), ("group", "telegram:-100", "telegram:1")]
    people.append(("group", "telegram:-100", "telegram:2"))
    said = [("ann", "user", "ann alone: 4711"), ("ann", "assistant", "kept, 4711")]
    said += [("group", "user", "ann in the group: 4711"), ("group", "user", "bob: 4711")]
    said.append(("nobody", "user", "unrecorded: 4711"))
    async with database(database_url) as engine, engine.begin() as conn:
        t = stamp if conn.dialect.name == "postgresql" else "2026-01-02 00:00:00.000000"
        for sid in ("ann", "group", "nobody"):
            await conn.execute(
                sa.text("INSERT INTO sessions (id, created_at, updated_at) VALUES (:s, :t, :t)"),
                {"s": sid, "t": t},
            )
        for sid, chat, person in people:
            await conn.execute(
                sa.text("INSERT INTO session_people VALUES (:s, :c, :p)"),
                {"s": sid, "c": chat, "p": person},
            )
        for sid, role, content in said:
            await conn.execute(
                sa.text(
                    "INSERT INTO messages (session_id, role, content, created_at) "
                    "VALUES (:s, :r, :c, :t)"
                ),
                {"s": sid, "r": role, "c": content, "t": t},
            )
    async with await MemoryStore.open(database_url) as store:
        assert (await store.export_session("ann")).senders == {0: "telegram:1"}
        assert (await store.export_session("group")).senders == {}  # who wrote which: unknown
        assert (await store.export_session("nobody")).senders == {}
        # Bob joins ann's old session: purging ann now removes only what she wrote there.
        await _said(store, "ann", "telegram:2", "2", "bob joins: 4711")
        assert await store.purge("telegram:1") == (0, 0, 1)
        assert [m.content for m in await store.load_messages("ann")] == [
            "kept, 4711",
            "bob joins: 4711",
        ]
        hits = {(h.session_id, h.snippet) for h in await store.search("alone")}
        assert hits == set()
        assert len(await store.load_messages("group")) == 2  # several people: left as it was
