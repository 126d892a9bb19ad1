"""`openpista sessions search` and `openpista memory ...` as a user runs them: real
subprocesses on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

from openpista.memory import MemoryStore, Speaker
from openpista.models import Message
from openpista_testing.cli import Cli
from openpista_testing.emulator import LlmEmulator


async def _fill(home: Path) -> None:
    async with await MemoryStore.open(f"sqlite:///{home / 'memory.db'}") as store:
        for session, chat, sender, text in (
            ("ann-s", "telegram:1", "1", "ann asks about the dentist on tuesday"),
            ("bob-s", "telegram:2", "2", "bob asks about the dentist too"),
        ):
            speaker = Speaker.of(chat, sender)
            await store.start_turn(session, Message(role="user", content=text), speaker=speaker)
            await store.bind_channel(chat, session)
        await store.append_message("ann-s", Message(role="assistant", content="\x1b[31mred"))
        await store.remember("telegram:1", "prefers mornings")


async def test_search_from_the_command_line(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    await _fill(tmp_path)
    shown = cli("sessions", "search", "dentist")
    assert shown.returncode == 0, shown.stderr
    assert "[dentist]" in shown.stdout
    assert {"ann-s", "bob-s"} <= set(shown.stdout.split())
    listed = json.loads(
        cli("sessions", "search", "dentist", "--person", "telegram:2", "--json").stdout
    )
    assert [(hit["session_id"], hit["role"]) for hit in listed] == [("bob-s", "user")]
    assert "\x1b" not in cli("sessions", "search", "red").stdout  # no terminal escapes
    hostile = cli("sessions", "search", '"', "*")
    assert hostile.returncode == 1
    assert hostile.stderr.startswith("❌ nothing to search for")
    assert "Traceback" not in hostile.stderr
    none = cli("sessions", "search", "absent")
    assert none.returncode == 0
    assert "No stored message holds: absent" in none.stdout


async def test_notes_and_purge(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    await _fill(tmp_path)
    assert "prefers mornings" in cli("memory", "show", "telegram:1").stdout
    assert "has no notes" in cli("memory", "show", "telegram:2").stdout
    wrong = cli("memory", "forget", "telegram:2", "1")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("❌ telegram:2 has no note 1")
    purged = cli("memory", "purge", "telegram:1", "--yes")
    assert purged.stdout.startswith("✓ purged telegram:1: 1 session, 1 note"), purged.stderr
    assert "has no notes" in cli("memory", "show", "telegram:1").stdout
    left = json.loads(cli("sessions", "search", "dentist", "--json").stdout)
    assert {hit["session_id"] for hit in left} == {"bob-s"}
    assert cli("memory", "show", "nobody").stderr.startswith("❌ a person is KIND:SENDER")


async def test_export_and_import(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    await _fill(tmp_path)
    exported = tmp_path / "ann.json"
    done = cli("memory", "export", "ann-s", "-o", str(exported))
    assert done.returncode == 0, done.stderr
    assert "# ann asks about the dentist" in cli("memory", "export", "ann-s", "--markdown").stdout
    assert cli("memory", "import", str(exported)).stderr.startswith("❌ session 'ann-s' exists")
    imported = cli("memory", "import", "--as", "copy", "-", stdin=exported.read_text())
    assert imported.stdout.startswith("✓ imported session copy (2 messages)"), imported.stderr
    broken = cli("memory", "import", "-", stdin="{not json")
    assert broken.stderr.startswith("❌ cannot import -:")
    found = json.loads(cli("sessions", "search", "tuesday", "--json").stdout)
    assert {hit["session_id"] for hit in found} == {"ann-s", "copy"}
