"""Export and import of a session, notes, and purging everything about a person or a chat,
on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import json

import pytest

from openpista.memory import MemoryStore, MemoryStoreError, SearchScope, Speaker
from openpista.memory.notes import NOTE_MAX_LENGTH, NOTES_BUDGET, notes_prompt
from openpista.memory.transfer import read_session, session_json, session_markdown
from openpista.models import Message, ToolCall, ToolResult


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
