"""One person across identities (``openpista memory link``), what each message's sender
lets ``purge`` remove, and accent-folded search: on SQLite and PostgreSQL, through a real
gateway against the LLM emulator where it matters who is asking."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from openpista.config import PolicyRule
from openpista.memory import MemoryStore, MemoryStoreError, SearchScope, Speaker
from openpista.memory.notes import NOTES_FILE_MAX_LENGTH, Note, notes_text, parse_notes_text
from openpista.models import Answer, ChannelEvent, Message
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.memory import database, upgrade_database

SECRET = "locker code 4711"


async def _said(store: MemoryStore, session: str, chat: str, sender: str, text: str) -> None:
    await store.start_turn(
        session, Message(role="user", content=text), speaker=Speaker.of(chat, sender)
    )


def _sessions(hits: list[Any]) -> set[str]:
    return {hit.session_id for hit in hits}


async def test_linked_identities_share_notes_and_conversations(store: MemoryStore) -> None:
    await _said(store, "ann-tg", "telegram:1", "1", f"my {SECRET}")
    await store.bind_channel("telegram:1", "ann-tg")
    await _said(store, "ann-web", "web:alice", "alice", "hello from the browser")
    await _said(store, "bob-tg", "telegram:2", "2", "bob's 4711 too")
    note = await store.remember("telegram:1", f"ann's {SECRET}")
    alice = SearchScope(person="web:alice")

    assert await store.notes_of("web:alice") == []
    assert await store.search("4711", alice) == []
    assert await store.link("web:alice", "telegram:1") == ["telegram:1", "web:alice"]
    assert await store.notes_of("web:alice") == [note]
    assert _sessions(await store.search("4711", alice)) == {"ann-tg"}
    assert _sessions(await store.search("browser", SearchScope(person="telegram:1"))) == {"ann-web"}
    assert await store.linked("telegram:1") == ["web:alice"]
    # Nobody else gains anything: bob sees neither ann's note nor her sessions.
    assert await store.notes_of("telegram:2") == []
    assert _sessions(await store.search("4711", SearchScope(person="telegram:2"))) == {"bob-tg"}

    # A third identity joins the group; unlinking one leaves the other two linked.
    assert await store.link("cli:ann", "web:alice") == ["cli:ann", "telegram:1", "web:alice"]
    assert await store.unlink("web:alice") == ["cli:ann", "telegram:1"]
    assert await store.linked("cli:ann") == ["telegram:1"]
    assert await store.notes_of("web:alice") == []
    assert await store.search("4711", alice) == []
    assert await store.unlink("cli:ann") == ["telegram:1"]
    assert await store.linked("telegram:1") == []  # a group of one is no link
    assert await store.unlink("telegram:1") == []

    # Notes forgotten through a linked identity; edits span the group.
    await store.link("telegram:1", "web:alice")
    assert await store.forget("web:alice", note.id) == 1
    await store.remember("telegram:1", "keep this")
    edit = await store.replace_notes("web:alice", ["keep this", "new from the web"])
    assert (edit.kept, edit.added, edit.removed, edit.shown) == (1, 1, 0, 2)
    notes = await store.notes_of("telegram:1")
    assert [(n.person, n.text) for n in notes] == [
        ("web:alice", "new from the web"),
        ("telegram:1", "keep this"),
    ]


async def test_hostile_links_are_refused(store: MemoryStore) -> None:
    with pytest.raises(MemoryStoreError, match="with itself"):
        await store.link("telegram:1", "telegram:1")
    for bad in ("nobody", "telegram:", "telegram:1\n", "x:" + "9" * 300):
        with pytest.raises(MemoryStoreError):
            await store.link("telegram:1", bad)
        with pytest.raises(MemoryStoreError):
            await store.unlink(bad)
    assert await store.linked("telegram:1") == []
    # A person id of SQL text is just a name.
    assert await store.link("telegram:1", "x:' OR 1=1 --") == ["telegram:1", "x:' OR 1=1 --"]
    assert await store.linked("telegram:2") == []


def test_the_notes_file_round_trips_and_is_checked() -> None:
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    texts = ["#tag first", "\\back slash", "plain", "  spaced   out  "]
    notes = [Note(i, "t:1", t, stamp) for i, t in reversed(list(enumerate(texts, 1)))]
    written = notes_text(notes, ["t:1", "w:1"])
    assert written.startswith("# The notes of t:1, w:1: one note per line, oldest first.")
    assert parse_notes_text(written) == ["#tag first", "\\back slash", "plain", "spaced out"]
    assert parse_notes_text("# only a comment\n\n \t \n") == []
    for hostile, error in (
        ("ok\n" + "x" * 1001, "line 2: the note is 1001 characters long"),
        ("".join(f"n{i}\n" for i in range(201)), "201 notes; a person keeps at most 200"),
        ("nul \x00 byte", "line 1: the note contains a NUL"),
        ("x" * (NOTES_FILE_MAX_LENGTH + 1), "the limit is 1000000"),
    ):
        with pytest.raises(MemoryStoreError, match=error):
            parse_notes_text(hostile)


async def test_replacing_notes_is_all_or_nothing(store: MemoryStore) -> None:
    await store.remember("telegram:1", "stays")
    with pytest.raises(MemoryStoreError, match="limit"):
        await store.replace_notes("telegram:1", ["fine", "x" * 1001])
    with pytest.raises(MemoryStoreError, match="at most 200"):
        await store.replace_notes("telegram:1", [f"n{i}" for i in range(201)])
    assert [n.text for n in await store.notes_of("telegram:1")] == ["stays"]
    assert (await store.replace_notes("telegram:1", ["stays", "stays"])).added == 1
    assert (await store.replace_notes("telegram:1", [])).removed == 2


async def _turn(adapter: LoopbackAdapter, chat: str, text: str, sender: str) -> Answer:
    assert adapter.ctx is not None
    event = ChannelEvent(channel_id=adapter.channel_prefix + chat, sender=sender, text=text)
    await adapter.ctx.submit(event)
    return await adapter.answer(chat)


async def test_only_the_owners_link_lets_another_identity_recall(
    gateways: Gateways, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    telegram, web = LoopbackAdapter("t:"), LoopbackAdapter("w:")
    settings = emulator_settings(llm_emulator, tmp_path)
    settings.policy.rules = [PolicyRule(tool="memory.*", action="allow")]
    gateway = await gateways.start(settings, telegram, web)
    memory = gateway.runtime.memory
    llm_emulator.reply_tool_calls([("memory_remember", {"note": f"ann's {SECRET}"})])
    llm_emulator.reply_text("noted")
    await _turn(telegram, "ann", f"my {SECRET}, remember it", sender="ann")
    llm_emulator.reply_text("hi all")
    await _turn(telegram, "group", "hello group", sender="ann")

    def ask(adapter: LoopbackAdapter, chat: str, sender: str) -> Any:
        llm_emulator.reply_tool_calls([("memory_search", {"query": "4711"})])
        llm_emulator.reply_text("done")
        return _turn(adapter, chat, "what is ann's locker code? link me to her", sender)

    def seen(since: int) -> str:
        return json.dumps([r.json for r in llm_emulator.requests[since:]], ensure_ascii=False)

    # Bob in the group, and ann's own web identity before the owner links it: nothing.
    since = len(llm_emulator.requests)
    await ask(telegram, "group", "bob")
    await ask(web, "alice", "alice")
    assert SECRET not in seen(since)
    # No tool links identities: only the owner can, from the command line.
    offered = {t["function"]["name"] for t in llm_emulator.requests[since].json["tools"]}
    assert "memory_search" in offered
    assert not [name for name in offered if "link" in name]

    await memory.link("t:ann", "w:alice")  # the owner's `openpista memory link`
    since = len(llm_emulator.requests)
    await ask(web, "alice", "alice")
    first_request = llm_emulator.requests[since].json["messages"][0]["content"]
    assert f"ann's {SECRET}" in first_request  # her note in the system prompt
    assert "locker code [4711]" in seen(since)  # her telegram message found
    since = len(llm_emulator.requests)
    await ask(telegram, "group", "bob")
    assert SECRET not in seen(since)

    # The gateway stored who wrote each user message; the agent's have no sender.
    async with database(settings.database.url) as engine, engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT role, sender FROM messages"))).all()
    assert {sender for role, sender in rows if role == "user"} == {"t:ann", "t:bob", "w:alice"}
    assert {sender for role, sender in rows if role != "user"} == {None}


async def _vectors(url: str) -> int:
    async with database(url) as engine, engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM message_embeddings")) or 0)


async def _add_vectors(url: str) -> None:
    """A vector for every message (as semantic search would keep them)."""
    async with database(url) as engine, engine.begin() as conn:
        ids = (await conn.scalars(sa.text("SELECT id FROM messages"))).all()
        vector: object = [0.5] if conn.dialect.name == "postgresql" else b"\0\0\0?"
        for message_id in ids:
            await conn.execute(
                sa.text(
                    "INSERT INTO message_embeddings (message_id, model, vector) "
                    "VALUES (:i, 'm', :v)"
                ),
                {"i": message_id, "v": vector},
            )


async def test_purge_removes_what_a_person_said_in_shared_sessions(
    store: MemoryStore, database_url: str
) -> None:
    await _said(store, "ann-private", "telegram:1", "1", "ann alone: alpha")
    await store.bind_channel("telegram:1", "ann-private")
    await _said(store, "group", "telegram:-100", "1", "ann in the group: alpha plan")
    await store.append_message("group", Message(role="assistant", content="noted, the plan"))
    await _said(store, "group", "telegram:-100", "2", "bob in the group: beta plan")
    await store.remember("telegram:1", "ann's note")
    await store.link("telegram:1", "web:ann")
    await _add_vectors(database_url)
    assert await _vectors(database_url) == 4
    await store.summarize("group", 1, "ann said alpha plan")
    await _said(store, "bob-alone", "telegram:2", "2", "bob alone")
    await store.append_message("bob-alone", Message(role="assistant", content="hi bob"))
    await store.summarize("bob-alone", 1, "bob greeted")

    assert await store.purge("telegram:1") == (1, 1, 1)
    assert [m.content for m in await store.load_messages("group")] == [
        "noted, the plan",
        "bob in the group: beta plan",
    ]
    # The group's summary quoted ann: gone, the next turn sees the messages left.
    group_turn = await store.start_turn("group", Message(role="user", content="next"), 50)
    assert [m.role for m in group_turn] == ["user"]
    assert group_turn[0].content == "bob in the group: beta plan"
    bob_turn = await store.start_turn("bob-alone", Message(role="user", content="next"), 50)
    assert any("bob greeted" in m.content for m in bob_turn)
    assert await store.search("alpha") == []
    assert _sessions(await store.search("plan")) == {"group"}
    assert len(await store.search("plan")) == 2
    assert _sessions(await store.search("beta", SearchScope(person="telegram:2"))) == {"group"}
    assert await store.linked("web:ann") == []
    assert await _vectors(database_url) == 2
    if database_url.startswith("sqlite"):  # the FTS5 index matches the table exactly
        async with database(database_url) as engine, engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)"
                )
            )
    # Appending after the purge keeps the index right too.
    await _said(store, "group", "telegram:-100", "2", "gamma plan")
    assert len(await store.search("plan")) == 3
    assert await store.purge("telegram:1") == (0, 0, 0)


ACCENTED = [
    ("a", "un café au lait"),
    ("b", "the cafe is open"),
    ("c", "her RÉSUMÉ was naïve"),
    ("d", "Ångström units"),
]


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("cafe", {"a", "b"}),
        ("café", {"a", "b"}),
        ("CAFÉ", {"a", "b"}),
        ("resume naive", {"c"}),
        ("résumé", {"c"}),
        ("angstrom", {"d"}),
        ("angström ÅNGSTRÖM", {"d"}),
        ("cafés", set()),  # folded, not stemmed
    ],
)
async def test_search_folds_accents(store: MemoryStore, query: str, found: set[str]) -> None:
    for session, content in ACCENTED:
        await store.start_turn(session, Message(role="user", content=content))
    hits = await store.search(query)
    assert _sessions(hits) == found
    if query == "cafe":
        snippets = " | ".join(sorted(hit.snippet for hit in hits))
        assert "[cafe] is open" in snippets
        assert "[café] au lait" in snippets


async def test_existing_database_is_folded_by_the_migration(database_url: str) -> None:
    await upgrade_database(database_url, "0010")
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    async with database(database_url) as engine, engine.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO sessions (id, created_at, updated_at) VALUES ('old', :t, :t)"),
            {"t": stamp if conn.dialect.name == "postgresql" else "2026-01-02 00:00:00.000000"},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO messages (session_id, role, content, created_at) "
                "VALUES ('old', 'user', 'an old café', :t)"
            ),
            {"t": stamp if conn.dialect.name == "postgresql" else "2026-01-02 00:00:00.000000"},
        )
    async with await MemoryStore.open(database_url) as store:
        [hit] = await store.search("cafe")
        assert (hit.session_id, "[café]" in hit.snippet) == ("old", True)
        assert await store.purge("telegram:1") == (0, 0, 0)  # old messages: no sender
        await store.start_turn("old", Message(role="user", content="a new cafe"))
        assert len(await store.search("café")) == 2


@pytest.mark.postgres
async def test_without_unaccent_search_works_unfolded(fresh_postgres_url: str) -> None:
    # A role that may create tables but not extensions: revision 0011 falls back to plain
    # 'simple', and search still works (accents count there).
    role = f"plain_{uuid.uuid4().hex[:12]}"
    async with database(fresh_postgres_url) as engine, engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        await conn.execute(sa.text(f"GRANT CREATE ON SCHEMA public TO {role}"))
    try:
        url = fresh_postgres_url.replace("://openpista@", f"://{role}@", 1)
        assert url != fresh_postgres_url
        async with await MemoryStore.open(url) as store:
            await store.start_turn("s", Message(role="user", content="un café au lait"))
            assert len(await store.search("café lait")) == 1
            assert await store.search("cafe") == []
    finally:
        async with database(fresh_postgres_url) as engine, engine.begin() as conn:
            await conn.execute(sa.text(f"DROP OWNED BY {role}"))
            await conn.execute(sa.text(f"DROP ROLE {role}"))


def test_the_machines_own_terminals_are_one_local_person() -> None:
    # openpista run (cli:run), the in-process TUI (tui:local) and the daemon's control socket
    # (local:<random>): the same user; cron and remote channels keep their kind.
    persons = {Speaker.of(chat, "ann").person for chat in ("cli:run", "tui:local", "local:3f2a")}
    assert persons == {"local:ann"}
    assert Speaker.of("cron:daily", "ann").person == "cron:ann"
    assert Speaker.of("telegram:7", "7").person == "telegram:7"
    assert Speaker.of("cli:run", "ann").channel_id == "cli:run"


async def test_the_migration_makes_terminal_speakers_one_local_person(database_url: str) -> None:
    # A database left at revision 0017: ann spoke and took notes from openpista run (cli:),
    # the TUI (tui:) and the daemon (local:); she had linked cli:ann and tui:ann with her
    # Telegram identity; bob only ever used the TUI.
    await upgrade_database(database_url, "0017")
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    spoke = [("s-cli", "cli:run", "cli:ann"), ("s-tui", "tui:local", "tui:ann")]
    spoke += [("s-daemon", "local:1", "local:ann"), ("s-bob", "tui:local", "tui:bob")]
    spoke.append(("s-tg", "telegram:7", "telegram:7"))
    links = [("cli:ann", "cli:ann"), ("telegram:7", "cli:ann"), ("tui:ann", "cli:ann")]
    async with database(database_url) as engine, engine.begin() as conn:
        t = stamp if conn.dialect.name == "postgresql" else "2026-01-02 00:00:00.000000"
        for sid, chat, person in spoke:
            await conn.execute(
                sa.text("INSERT INTO sessions (id, created_at, updated_at) VALUES (:s, :t, :t)"),
                {"s": sid, "t": t},
            )
            await conn.execute(
                sa.text("INSERT INTO session_people VALUES (:s, :c, :p)"),
                {"s": sid, "c": chat, "p": person},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO messages (session_id, role, content, created_at, sender) "
                    "VALUES (:s, 'user', :c, :t, :p)"
                ),
                {"s": sid, "c": f"{person} says 4711", "t": t, "p": person},
            )
            await conn.execute(
                sa.text("INSERT INTO notes (person, text, created_at) VALUES (:p, :n, :t)"),
                {"p": person, "n": f"note of {person}", "t": t},
            )
        for identity, person in links:
            await conn.execute(
                sa.text("INSERT INTO person_links VALUES (:i, :p)"), {"i": identity, "p": person}
            )
    async with await MemoryStore.open(database_url) as store:
        ann = {n.text for n in await store.notes_of("local:ann")}
        assert ann == {f"note of {p}" for p in ("cli:ann", "tui:ann", "local:ann", "telegram:7")}
        assert await store.linked("local:ann") == ["telegram:7"]
        assert {n.text for n in await store.notes_of("local:bob")} == {"note of tui:bob"}
        assert await store.notes_of("cli:ann") == []
        found = await store.search("4711", scope=SearchScope(person="local:ann"))
        assert _sessions(found) == {"s-cli", "s-tui", "s-daemon", "s-tg"}
        assert (await store.export_session("s-tui")).senders == {0: "local:ann"}
