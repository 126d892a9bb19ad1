"""Semantic search on a real SQLite file and a real PostgreSQL server, with vectors made by
the real litellm client against the LLM emulator's ``/v1/embeddings`` (hashed bag of words
and trigrams: texts are near when they share words or parts of words).

Covers: vector search finding what all-words full-text search misses, the fusion of both,
scoping (another person's similar message is never returned), background indexing that
never fails a turn, backfill with progress, a change of model, deletion, and hostile
vectors from the model."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from openpista.config import PolicyRule, Settings
from openpista.memory import MemoryStore, MemoryStoreError, SearchScope, Speaker
from openpista.memory.embeddings import (
    MessageEmbeddingRow,
    count_vectors,
    normalized,
)
from openpista.memory.hybrid import RRF_K, fuse
from openpista.memory.schema import HEAD_REVISION
from openpista.memory.tables import VERSION_TABLE, Base
from openpista.models import Answer, ChannelEvent, Message
from openpista.providers.base import ProviderError
from openpista.providers.embedder import ProviderEmbedder, build_embedder, enable_semantic_search
from openpista.runtime import build_providers
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.embeddings import hashed_embedding
from openpista_testing.emulator import ErrorReply, LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.memory import database, schema_revision, upgrade_database

MODEL = "hash-embed"

CORPUS = {
    "tuning": ("test:ann", ["how do I tune postgres autovacuum on a busy database"]),
    "garden": ("test:ann", ["my tomatoes need more sunlight this summer"]),
    "secret": ("test:bob", ["bob's postgres autovacuum settings are in the vault"]),
}


@pytest.fixture
def emulator() -> Iterator[LlmEmulator]:
    with LlmEmulator(api_key="test-key") as emu:
        yield emu


def _settings(emulator: LlmEmulator, tmp_path: Path, options: str = "") -> Settings:
    base = emulator_settings(emulator, tmp_path)
    data = base.model_dump(exclude={"source_path"})
    data["providers"]["openai"]["api_key"] = "test-key"
    data["memory"] = {"embeddings": {"model": MODEL, "batch": 2, **_options(options)}}
    return Settings(**data)


def _options(options: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(options)


def _embedder(emulator: LlmEmulator, tmp_path: Path) -> ProviderEmbedder:
    from openpista.plugins import PluginHost

    embedder = build_embedder(
        _settings(emulator, tmp_path), build_providers(PluginHost.load(entry_points=False))
    )
    assert embedder is not None
    return embedder


@pytest.fixture
async def semantic(store: MemoryStore, emulator: LlmEmulator, tmp_path: Path) -> MemoryStore:
    """The store with semantic search on, through the emulator."""
    store.enable_embeddings(_embedder(emulator, tmp_path), batch=2)
    return store


async def _fill(store: MemoryStore) -> None:
    for session_id, (person, texts) in CORPUS.items():
        speaker = Speaker.of(person, f"chat-{session_id}")
        first, *rest = texts
        await store.start_turn(session_id, Message(role="user", content=first), speaker=speaker)
        await store.append_messages(
            session_id, [Message(role="assistant", content=t) for t in rest]
        )


async def _settled(store: MemoryStore) -> None:
    assert store.embeddings is not None
    await asyncio.wait_for(store.embeddings.settled(), 60)


async def _sessions(store: MemoryStore, query: str, scope: SearchScope | None = None) -> list[str]:
    return [hit.session_id for hit in await store.search(query, scope)]


async def test_vectors_find_what_every_word_full_text_misses(
    store: MemoryStore, emulator: LlmEmulator, tmp_path: Path
) -> None:
    await _fill(store)
    # Full-text: every word must appear; "vacuuming" is in no message.
    assert await _sessions(store, "vacuuming postgres") == []
    store.enable_embeddings(_embedder(emulator, tmp_path))
    assert await store.embeddings.index() == 3  # type: ignore[union-attr]
    found = await store.search("vacuuming postgres")
    assert {hit.session_id for hit in found} == {"tuning", "secret"}  # not the tomatoes
    assert found[0].snippet.startswith("how do I tune postgres") or found[0].snippet.startswith(
        "bob's postgres"
    )
    assert all(hit.score > 0 for hit in found)
    # The emulator's vectors went through litellm: one request per batch, then the query's.
    paths = {request.path for request in emulator.requests}
    assert paths == {"/v1/embeddings"}
    assert emulator.requests[-1].json["input"] == ["vacuuming postgres"]
    assert emulator.requests[-1].json["encoding_format"] == "base64"  # not 10 µs a float


async def test_a_message_found_both_ways_ranks_first(semantic: MemoryStore) -> None:
    await _fill(semantic)
    await semantic.append_messages(
        "garden", [Message(role="user", content="sunlight for tomatoes and peppers")]
    )
    await _settled(semantic)
    hits = await semantic.search("tomatoes sunlight")
    # Both garden messages hold both words; both are also the nearest vectors.
    assert [hit.session_id for hit in hits] == ["garden", "garden"]
    assert "[tomatoes]" in hits[0].snippet or "[sunlight]" in hits[0].snippet
    # Each is first in one list and second in the other (or first in both).
    assert hits[0].score >= 1 / (RRF_K + 1) + 1 / (RRF_K + 2)


async def test_another_persons_similar_message_is_never_returned(semantic: MemoryStore) -> None:
    await _fill(semantic)
    await _settled(semantic)
    # Ann asks with Bob's own words: his message is the nearest vector of all, but not hers.
    everyone = await _sessions(semantic, "bob's postgres autovacuum settings vault")
    assert everyone[0] == "secret"
    ann = SearchScope(person="test:ann")
    assert "secret" not in await _sessions(semantic, "bob's postgres autovacuum settings", ann)
    assert await _sessions(semantic, "vault", ann) == []
    chat = SearchScope(channel_id="chat-garden")
    assert set(await _sessions(semantic, "postgres autovacuum", chat)) <= {"garden"}
    one = SearchScope(session_id="tuning")
    assert await _sessions(semantic, "bob postgres autovacuum", one) == ["tuning"]
    nobody = SearchScope(person="test:mallory")
    assert await _sessions(semantic, "postgres autovacuum vault tomatoes", nobody) == []


async def test_a_failing_embedder_never_fails_a_turn_and_is_caught_up(
    semantic: MemoryStore, emulator: LlmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.embeddings_error = ErrorReply(500, "the embedding service is down")
    await _fill(semantic)
    history = await semantic.start_turn("tuning", Message(role="user", content="and vacuum?"))
    assert [m.content for m in history] == [CORPUS["tuning"][1][0]]
    await _settled(semantic)
    assert semantic.embeddings is not None
    assert await semantic.embeddings.pending() == 4
    assert "embedding messages failed" in caplog.text
    # The query cannot be embedded either: full-text results only.
    assert await _sessions(semantic, "tomatoes") == ["garden"]
    assert await _sessions(semantic, "vacuuming postgres") == []
    emulator.embeddings_error = None
    seen: list[tuple[int, int]] = []
    assert await semantic.embeddings.index(lambda done, total: seen.append((done, total))) == 4
    assert seen == [(2, 4), (4, 4)]
    assert await semantic.embeddings.pending() == 0
    assert "tuning" in await _sessions(semantic, "vacuuming postgres")


async def test_new_messages_are_embedded_in_the_background(semantic: MemoryStore) -> None:
    await _fill(semantic)
    await _settled(semantic)
    assert semantic.embeddings is not None
    assert await semantic.embeddings.pending() == 0
    await semantic.append_messages("garden", [Message(role="assistant", content="zucchinis")])
    await _settled(semantic)
    assert await semantic.embeddings.pending() == 0
    assert await _sessions(semantic, "zucchini") == ["garden"]  # no full-text match


async def test_a_new_model_embeds_again_and_deletion_takes_the_vectors(
    store: MemoryStore, emulator: LlmEmulator, tmp_path: Path
) -> None:
    await _fill(store)
    first = _embedder(emulator, tmp_path)
    store.enable_embeddings(first)
    assert store.embeddings is not None
    assert await store.embeddings.index() == 3
    second = ProviderEmbedder(first._provider, "hash-embed-2")
    indexer = store.enable_embeddings(second)
    assert await indexer.pending() == 3
    assert await indexer.index() == 3
    assert await _vectors(store, "hash-embed-2") == 3
    assert await _vectors(store, MODEL) == 0  # replaced, one vector per message
    assert await store.delete_session("tuning")
    await store.purge("test:bob")
    assert await _vectors(store, "hash-embed-2") == 1
    assert await _sessions(store, "postgres autovacuum") == []


async def _vectors(store: MemoryStore, model: str) -> int:
    return await store._db.run(lambda conn: count_vectors(conn, model), "counting", write=False)


class _Garbage:
    """An embedder whose answers are hostile: each call returns the next one."""

    model = "garbage"

    def __init__(self, answers: list[object]) -> None:
        self.answers = answers

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return self.answers.pop(0)  # type: ignore[return-value]


HOSTILE_ANSWERS: list[list[object]] = [
    [],  # no vector
    [[0.0, 0.0]],  # zero
    [[math.nan, 1.0]],
    [[math.inf]],
    [["1", 2.0]],
    [[True, 1.0]],
    [[1.0] * 9000],  # too long
    [[]],
    ["not a vector"],
]


async def test_hostile_vectors_are_refused_and_stored_nowhere(store: MemoryStore) -> None:
    await store.start_turn("s", Message(role="user", content="hello"))
    for answer in HOSTILE_ANSWERS:
        indexer = store.enable_embeddings(_Garbage([answer, answer]))
        if len(answer) == 1:  # one answer that is no vector: left out, pending
            assert await indexer.index() == 0
        else:  # as many vectors as texts is the least an answer must be
            with pytest.raises(MemoryStoreError):
                await indexer.index()
        assert await indexer.pending() == 1, answer
        assert await _vectors(store, "garbage") == 0
        assert await _sessions(store, "hello") == ["s"]  # the query vector is refused too


async def test_one_bad_vector_does_not_hold_up_the_others(store: MemoryStore) -> None:
    await store.start_turn("s", Message(role="user", content="first"))
    await store.append_message("s", Message(role="user", content="second"))
    indexer = store.enable_embeddings(_Garbage([[[0.0, 0.0], [1.0, 1.0]]]))
    assert await indexer.index() == 1
    assert await indexer.pending() == 1
    assert await _vectors(store, "garbage") == 1


async def test_vectors_of_another_length_are_skipped(store: MemoryStore) -> None:
    await store.start_turn("s", Message(role="user", content="hello"))
    indexer = store.enable_embeddings(_Garbage([[[1.0, 0.0, 0.0]], [[1.0, 0.0]]]))
    assert await indexer.index() == 1
    assert await store.search("other words") == []  # 2-dimensional query, 3-dimensional vector


def test_embeddings_answers_are_read_as_base64_or_numbers() -> None:
    import base64
    import binascii
    import struct

    from openpista.providers.litellm_provider import _embedding

    assert _embedding(base64.b64encode(struct.pack("<2f", 0.5, -2.0)).decode()) == [0.5, -2.0]
    assert _embedding([1, 2.5]) == [1.0, 2.5]
    for hostile in ("not base64!", base64.b64encode(b"12345").decode()):
        with pytest.raises((ValueError, binascii.Error)):
            _embedding(hostile)


def test_normalized_scales_to_unit_length() -> None:
    assert normalized([3, 4]) == [0.6, 0.8]
    with pytest.raises(MemoryStoreError, match="zero"):
        normalized([0, 0])


def test_reciprocal_rank_fusion() -> None:
    fused = fuse([[1, 2, 3], [3, 4]], 3)
    assert [item for item, _ in fused] == [3, 1, 4]  # 2 and 4 tie: the newer
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert fuse([[5], [6]], 10) == [(6, 1 / (RRF_K + 1)), (5, 1 / (RRF_K + 1))]  # newer first
    assert fuse([[], []], 5) == []


def test_emulator_vectors_are_deterministic_and_share_parts_of_words() -> None:
    def cosine(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(hashed_embedding(a), hashed_embedding(b), strict=True))

    assert hashed_embedding("Vacuum") == hashed_embedding("vacuum")
    assert cosine("vacuuming", "autovacuum") > 0.3
    assert cosine("vacuuming", "tomatoes") < 0.3
    assert hashed_embedding("!!!") == [0.0] * 256


async def test_emulator_embeddings_endpoint(emulator: LlmEmulator) -> None:
    import base64
    import struct

    import httpx

    url = f"{emulator.openai_base_url}/embeddings"
    auth = {"Authorization": "Bearer test-key"}
    async with httpx.AsyncClient() as client:
        plain = await client.post(url, json={"model": "m", "input": "hi there"}, headers=auth)
        assert plain.status_code == 200
        body = plain.json()
        assert body["data"][0]["embedding"] == hashed_embedding("hi there")
        assert body["usage"]["prompt_tokens"] == 2
        packed = await client.post(
            url,
            json={"model": "m", "input": ["hi"], "encoding_format": "base64", "dimensions": 8},
            headers=auth,
        )
        raw = base64.b64decode(packed.json()["data"][0]["embedding"])
        assert list(struct.unpack("<8f", raw)) == pytest.approx(hashed_embedding("hi", 8))
        for bad in (
            {"input": "x"},
            {"model": "m", "input": []},
            {"model": "m", "input": [1]},
            {"model": "m", "input": "x", "dimensions": 0},
            {"model": "m", "input": "x", "dimensions": True},
            {"model": "m", "input": "x", "encoding_format": "hex"},
        ):
            refused = await client.post(url, json=bad, headers=auth)
            assert refused.status_code == 400, bad
        assert (await client.post(url, json={"model": "m", "input": "x"})).status_code == 401


async def test_provider_errors_are_one_clear_line(emulator: LlmEmulator, tmp_path: Path) -> None:
    embedder = _embedder(emulator, tmp_path)
    emulator.embeddings_error = ErrorReply(401, "Incorrect API key provided")
    with pytest.raises(ProviderError) as caught:
        await embedder.embed(["hello"])
    assert "\n" not in str(caught.value).strip()
    assert "Traceback" not in str(caught.value)


async def test_configuration_off_by_default_and_problems_named(
    store: MemoryStore, emulator: LlmEmulator, tmp_path: Path
) -> None:
    from openpista.plugins import PluginHost

    registry = build_providers(PluginHost.load(entry_points=False))
    assert build_embedder(Settings(), registry) is None
    assert enable_semantic_search(store, Settings(), registry) is None
    assert _model(store) is None
    unknown = _settings(emulator, tmp_path, 'provider = "no-such-provider"')
    problem = enable_semantic_search(store, unknown, registry)
    assert problem is not None
    assert problem.startswith("❌ semantic search is off:")
    assert "no-such-provider" in problem
    assert _model(store) is None
    assert enable_semantic_search(store, _settings(emulator, tmp_path), registry) is None
    assert _model(store) == MODEL


def _model(store: MemoryStore) -> str | None:
    return store.embeddings.embedder.model if store.embeddings is not None else None


async def test_the_model_matches_the_migrations(store: MemoryStore) -> None:
    def differences(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        found = compare_metadata(context, Base.metadata)
        return [d for d in found if MessageEmbeddingRow.__tablename__ in repr(d)]

    assert await store._db.run(differences, "comparing", write=False) == []


async def test_a_database_from_before_revision_0009_is_backfilled(
    database_url: str, emulator: LlmEmulator, tmp_path: Path
) -> None:
    await upgrade_database(database_url, "0008")
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
            [{"c": f"zucchinis stored before vectors, {i}", "t": stamp} for i in range(5)],
        )
    async with await MemoryStore.open(database_url) as store:
        assert await schema_revision(database_url) == HEAD_REVISION
        indexer = store.enable_embeddings(_embedder(emulator, tmp_path), batch=2)
        assert await indexer.pending() == 5
        assert await indexer.index() == 5
        hits = await store.search("zucchini")  # no full-text match: vectors only
        assert [hit.session_id for hit in hits] == ["old"] * 5
        assert hits[0].snippet.startswith("zucchinis stored before vectors")
        assert hits[0].created_at == stamp


async def test_through_the_gateway_turns_never_wait_for_or_fail_on_embeddings(
    gateways: Gateways, emulator: LlmEmulator, tmp_path: Path
) -> None:
    settings = _settings(emulator, tmp_path)
    settings.policy.rules = [PolicyRule(tool="memory.*", action="allow")]
    adapter = LoopbackAdapter("t:")
    gateway = await gateways.start(settings, adapter)
    memory = gateway.runtime.memory
    assert memory.embeddings is not None
    emulator.embeddings_error = ErrorReply(503, "embeddings are down")
    answer = await _chat(adapter, "ann", "my locker code is 4711")
    assert not answer.is_error
    assert answer.text == "OK"
    await _chat(adapter, "bob", "the lockers are being repainted, code 1234")
    await _settled(memory)
    assert await memory.embeddings.pending() == 4  # both chats' messages and answers
    emulator.embeddings_error = None
    await _chat(adapter, "ann", "thanks")
    await _settled(memory)
    assert await memory.embeddings.pending() == 0
    # "lockers" is in no message of ann's: her locker message is found by its vector, and
    # bob's message holding the very word is not hers to find.
    found = (await _chat(adapter, "ann", "/search lockers")).text
    assert "4711" in found
    assert "repainted" not in found
    emulator.reply_tool_calls([("memory_search", {"query": "locker code 4711 ann"})])
    emulator.reply_text("done")
    await _chat(adapter, "bob", "what was ann's locker code?")
    result = json.dumps(emulator.requests[-1].json["messages"][-1], ensure_ascii=False)
    assert "repainted" in result  # bob's own message, near in meaning
    assert "4711" not in result


async def _chat(adapter: LoopbackAdapter, chat: str, text: str) -> Answer:
    assert adapter.ctx is not None
    await adapter.ctx.submit(ChannelEvent(channel_id="t:" + chat, sender=chat, text=text))
    return await adapter.answer(chat)


async def test_the_scan_is_bounded_to_the_newest_vectors(
    semantic: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openpista.memory.embeddings

    await semantic.start_turn("old", Message(role="user", content="zucchinis, first"))
    await semantic.start_turn("new", Message(role="user", content="zucchinis, second"))
    await semantic.append_message("new", Message(role="user", content="zucchinis, third"))
    await _settled(semantic)
    assert len(await semantic.search("zucchini")) == 3
    monkeypatch.setattr(openpista.memory.embeddings, "MAX_SCANNED_VECTORS", 2)
    assert await _sessions(semantic, "zucchini") == ["new", "new"]


async def test_the_runtime_warns_when_the_embedder_cannot_be_built(
    emulator: LlmEmulator, tmp_path: Path
) -> None:
    from openpista.plugins import PluginHost
    from openpista.runtime import Runtime

    (tmp_path / "workspace").mkdir(exist_ok=True)
    settings = _settings(emulator, tmp_path, 'provider = "no-such-provider"')
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    try:
        assert runtime.memory.embeddings is None
        [problem] = [p for p in runtime.problems if "semantic search" in p]
        assert problem.startswith("❌ semantic search is off: unknown provider 'no-such-provider'")
    finally:
        await runtime.close()
