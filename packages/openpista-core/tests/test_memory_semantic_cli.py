"""Semantic search as a user runs it: `openpista sessions embed` (backfill with progress),
`openpista sessions search` fusing vectors, and `openpista doctor`, as real subprocesses on
a real SQLite database, with vectors from the LLM emulator through litellm."""

from __future__ import annotations

import json
from pathlib import Path

from openpista.memory import MemoryStore, Speaker
from openpista.models import Message
from openpista_testing.cli import Cli
from openpista_testing.emulator import ErrorReply, LlmEmulator

SEMANTIC = '\n[memory.embeddings]\nmodel = "hash-embed"\nbatch = 2\n'


async def _fill(home: Path) -> None:
    async with await MemoryStore.open(f"sqlite:///{home / 'memory.db'}") as store:
        for session, sender, text in (
            ("tuning", "1", "how do I tune postgres autovacuum on a busy database"),
            ("garden", "1", "my tomatoes need more sunlight this summer"),
            ("secret", "2", "bob's postgres autovacuum settings are in the vault"),
        ):
            speaker = Speaker.of(f"telegram:{sender}", sender)
            await store.start_turn(session, Message(role="user", content=text), speaker=speaker)


def _semantic_cli(home: Path, emulator: LlmEmulator, extra: str = "") -> Cli:
    cli = Cli.isolated(home, emulator)
    cli.write_config(cli.config.read_text() + SEMANTIC + extra)
    return cli


async def test_backfill_then_search_by_meaning(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    await _fill(tmp_path)
    cli = _semantic_cli(tmp_path, llm_emulator)
    embedded = cli("sessions", "embed")
    assert embedded.returncode == 0, embedded.stderr
    lines = embedded.stdout.splitlines()
    assert lines == [
        "embedded 2/3 messages",
        "embedded 3/3 messages",
        "✓ 3 message(s) embedded with hash-embed; every message has its vector",
    ]
    hits = json.loads(cli("sessions", "search", "vacuuming", "postgres", "--json").stdout)
    assert {hit["session_id"] for hit in hits} == {"tuning", "secret"}


async def test_embedding_failures_are_one_line(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    await _fill(tmp_path)
    llm_emulator.embeddings_error = ErrorReply(500, "the embedding service is down")
    cli = _semantic_cli(tmp_path, llm_emulator)
    failed = cli("sessions", "embed")
    assert failed.returncode == 1
    assert failed.stderr.startswith("❌ embedding failed (run it again to go on):")
    assert "Traceback" not in failed.stderr


async def test_configuration_problems_are_one_line(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    await _fill(tmp_path)
    off = Cli.isolated(tmp_path / "off", llm_emulator)
    refused = off("sessions", "embed")
    assert refused.returncode == 1
    assert refused.stderr.startswith("❌ semantic search is off: set [memory.embeddings] model")

    wrong = _semantic_cli(tmp_path, llm_emulator, 'provider = "no-such-provider"\n')
    broken = wrong("sessions", "embed")
    assert broken.returncode == 1
    assert broken.stderr.startswith("❌ semantic search is off: unknown provider")
    assert len(broken.stderr.strip().splitlines()) == 1
    plain = wrong("sessions", "search", "tomatoes")
    assert plain.returncode == 0
    assert "garden" in plain.stdout
    assert plain.stderr.startswith("❌ semantic search is off")


def test_doctor_says_how_vectors_are_compared(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = _semantic_cli(tmp_path, llm_emulator)
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").stdout)}
    semantic = checks["semantic search"]
    assert semantic["ok"] is True
    assert (
        semantic["detail"] == "hash-embed: 256-dimensional vectors, nearest by python cosine scan"
    )
    off = Cli.isolated(tmp_path / "off", llm_emulator)
    quiet = {c["name"]: c for c in json.loads(off("doctor", "--json").stdout)}
    assert quiet["semantic search"]["ok"] is None
