"""Full-text search over stored messages, on a real SQLite file and a real PostgreSQL server:
relevance, scopes, the index kept in sync, hostile queries, and existing databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from openpista.memory import MemoryStore, MemoryStoreError, SearchScope, Speaker
from openpista.memory.search import MAX_QUERY_LENGTH, MAX_TERMS, fts5_match, query_terms
from openpista.models import Message, ToolCall, ToolResult
from openpista_testing.memory import database, schema_revision, upgrade_database

CORPUS = {
    "tuning": [
        "postgres tuning: raise shared_buffers, then tune postgres autovacuum",
        "the weather is nice today",
    ],
    "chatter": [
        "I once read a long blog post about databases and postgres and many other "
        "things that have nothing to do with tuning anything at all, really",
        "서울 날씨 어때요? 내일 비가 와요",
    ],
    "cooking": ["a recipe for risotto with mushrooms", "Risotto needs patience"],
}


async def _fill(store: MemoryStore) -> None:
    for session_id, texts in CORPUS.items():
        first, *rest = texts
        speaker = Speaker.of(f"test:{session_id}", session_id)
        await store.start_turn(session_id, Message(role="user", content=first), speaker=speaker)
        await store.append_messages(
            session_id, [Message(role="assistant", content=text) for text in rest]
        )


async def _found(store: MemoryStore, query: str, scope: SearchScope | None = None) -> list[str]:
    return [hit.session_id for hit in await store.search(query, scope)]


async def test_most_relevant_first_every_word_required(store: MemoryStore) -> None:
    await _fill(store)
    hits = await store.search("postgres")
    assert [hit.session_id for hit in hits] == ["tuning", "chatter"]
    assert hits[0].score > hits[1].score
    assert hits[0].role == "user"
    assert "[postgres]" in hits[0].snippet
    assert hits[0].created_at.tzinfo == UTC
    assert await _found(store, "POSTGRES Tuning") == ["tuning", "chatter"]
    assert await _found(store, "postgres risotto") == []  # every word must appear
    assert await _found(store, "risotto") == ["cooking", "cooking"]
    assert await _found(store, "날씨") == ["chatter"]
    assert await _found(store, "absent") == []
    assert len(await store.search("postgres", limit=1)) == 1


async def test_tool_calls_and_results_are_not_searched(store: MemoryStore) -> None:
    await store.start_turn("s", Message(role="user", content="hello"))
    call = ToolCall(id="c", name="system.run", arguments={"command": "cat zanzibar"})
    await store.append_messages(
        "s",
        [
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_result=ToolResult(call_id="c", name="x", output="zanzibar")),
        ],
    )
    assert await store.search("zanzibar") == []


async def test_the_index_follows_appends_and_deletions(store: MemoryStore) -> None:
    await _fill(store)
    await store.append_messages("cooking", [Message(role="user", content="postgres risotto")])
    assert await _found(store, "postgres risotto") == ["cooking"]
    assert await store.delete_session("tuning")
    assert sorted(await _found(store, "postgres")) == ["chatter", "cooking"]
    assert await _found(store, "autovacuum") == []


async def test_scopes_keep_people_and_chats_apart(store: MemoryStore) -> None:
    await _fill(store)
    # A group chat: two people in one session.
    group = "test:group"
    for sender, text in (("ann", "ann's postgres password hint"), ("bob", "bob likes risotto")):
        message = Message(role="user", content=text)
        await store.start_turn("group", message, speaker=Speaker.of(group, sender))
    assert await _found(store, "postgres", SearchScope(person="test:tuning")) == ["tuning"]
    assert await _found(store, "postgres", SearchScope(person="test:cooking")) == []
    assert await _found(store, "postgres", SearchScope(person="test:ann")) == ["group"]
    assert await _found(store, "postgres", SearchScope(person="test:bob")) == ["group"]
    assert await _found(store, "postgres", SearchScope(person="test:carol")) == []
    assert await _found(store, "postgres", SearchScope(channel_id=group)) == ["group"]
    assert await _found(store, "risotto", SearchScope(session_id="cooking")) == [
        "cooking",
        "cooking",
    ]
    both = SearchScope(session_id="tuning", person="test:cooking")
    assert await _found(store, "postgres", both) == []
    # A chat bound to a session finds it even before anyone spoke there.
    await store.bind_channel("test:new", "chatter")
    assert await _found(store, "postgres", SearchScope(channel_id="test:new")) == ["chatter"]


HOSTILE = [
    "postgres OR risotto",
    "postgres NOT tuning",
    "NEAR(postgres risotto, 5)",
    "content:risotto",
    "{content}: risotto",
    "^risotto",
    "risott*",
    "- risotto",
    '"risotto',
    'risotto" OR "postgres',
    "risotto' OR '1'='1",
    "'; DROP TABLE messages; --",
    "(risotto) AND (postgres)",
    "risotto\x00postgres",
    "risotto\u202e\u200bpostgres",
    "\\x00 %s %(q)s :q $1 ?",
    "rank:bm25(10.0)",
    "messages_fts MATCH 'postgres'",
]


async def test_hostile_queries_are_literal_words(store: MemoryStore) -> None:
    await _fill(store)
    for query in HOSTILE:
        # Every hit holds every word of the query literally: nothing is a search operator.
        for hit in await store.search(query):
            for term in query_terms(query):
                words = "".join(c if c.isalnum() else " " for c in term).split()
                assert all(w.lower() in hit.snippet.lower() for w in words), (query, hit)
    assert await store.search("risotto\x00postgres") == []
    assert await _found(store, "risotto") == ["cooking", "cooking"]  # the index is intact


async def test_operators_match_only_as_words(store: MemoryStore) -> None:
    await store.start_turn("s", Message(role="user", content="cats OR dogs, NOT birds"))
    await store.start_turn("t", Message(role="user", content="cats only"))
    assert await _found(store, "cats OR dogs") == ["s"]
    assert await _found(store, "cats NOT") == ["s"]
    assert await _found(store, "cat*") == []  # no prefix search


async def test_unusable_queries_are_refused_clearly(store: MemoryStore) -> None:
    for query in ("", "   ", "*** --- ()", '"'):
        with pytest.raises(MemoryStoreError, match="nothing to search for"):
            await store.search(query)
    with pytest.raises(MemoryStoreError, match=f"limit is {MAX_QUERY_LENGTH}"):
        await store.search("a" * (MAX_QUERY_LENGTH + 1))
    with pytest.raises(MemoryStoreError, match=f"limit is {MAX_TERMS}"):
        await store.search(" ".join(["word"] * (MAX_TERMS + 1)))
    with pytest.raises(MemoryStoreError, match="not int"):
        await store.search(42)  # type: ignore[arg-type]
    with pytest.raises(MemoryStoreError, match="KIND:SENDER"):
        await store.search("x", SearchScope(person="nobody"))
    with pytest.raises(MemoryStoreError, match="positive integer"):
        await store.search("x", limit=0)


def test_fts5_terms_are_quoted() -> None:
    assert fts5_match(['say"hi', "OR"]) == '"say""hi" "OR"'


async def test_an_existing_database_is_indexed_by_the_migration(database_url: str) -> None:
    await upgrade_database(database_url, "0003")
    stamp = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with database(database_url) as engine, engine.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO sessions (id, created_at, updated_at) VALUES ('old', :t, :t)"),
            {"t": stamp},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO messages (session_id, role, content, created_at) "
                "VALUES ('old', 'user', :c, :t)"
            ),
            [{"c": f"stored before search existed, number {i}", "t": stamp} for i in range(30)],
        )
        await conn.execute(
            sa.text(
                "INSERT INTO channel_sessions (channel_id, session_id, updated_at) "
                "VALUES ('telegram:7', 'old', :t)"
            ),
            {"t": stamp},
        )
    async with await MemoryStore.open(database_url) as store:
        assert await schema_revision(database_url) != "0003"
        hits = await store.search("existed number", limit=100)
        assert len(hits) == 30
        assert {hit.session_id for hit in hits} == {"old"}
        assert hits[0].created_at == stamp
        # The private chat bound to the session is its person's.
        found = await _found(store, "existed", SearchScope(person="telegram:7"))
        assert set(found) == {"old"}
        assert await _found(store, "existed", SearchScope(person="telegram:8")) == []
        await store.append_message("old", Message(role="user", content="and after it"))
        assert await _found(store, "after") == ["old"]
