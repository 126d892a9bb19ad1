"""`openpista sessions search` and `openpista memory ...` as a user runs them: real
subprocesses on a real SQLite database."""

from __future__ import annotations

import json
import sys
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
    markdown = cli("memory", "export", "ann-s", "--markdown").stdout
    assert "# ann asks about the dentist" in markdown
    assert "## user `telegram:1` · " in markdown
    assert cli("memory", "import", str(exported)).stderr.startswith("❌ session 'ann-s' exists")
    imported = cli("memory", "import", "--as", "copy", "-", stdin=exported.read_text())
    assert imported.stdout.startswith("✓ imported session copy (2 messages)"), imported.stderr
    broken = cli("memory", "import", "-", stdin="{not json")
    assert broken.stderr.startswith("❌ cannot import -:")
    hostile = json.loads(exported.read_text())
    assert hostile["messages"][0]["sender"] == "telegram:1"
    hostile["messages"][0]["sender"] = "telegram:\x1b[31m"
    refused = cli("memory", "import", "--as", "evil", "-", stdin=json.dumps(hostile))
    assert refused.stderr.startswith("❌ cannot import -: invalid session export: sender of")
    assert "\x1b" not in refused.stderr
    assert "Traceback" not in refused.stderr
    found = json.loads(cli("sessions", "search", "tuesday", "--json").stdout)
    assert {hit["session_id"] for hit in found} == {"ann-s", "copy"}


def _editor(path: Path, body: str) -> str:
    """An editor command: a Python script that runs ``body`` with ``text`` (the file's
    content) and ``path`` (the file) set."""
    path.write_text(
        f"#!{sys.executable}\nimport sys, pathlib\npath = pathlib.Path(sys.argv[1])\n"
        f"text = path.read_text(encoding='utf-8')\n{body}\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return str(path)


async def test_link_and_edit_in_the_editor(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    await _fill(tmp_path)
    async with await MemoryStore.open(f"sqlite:///{tmp_path / 'memory.db'}") as store:
        await store.remember("telegram:1", "#1 priority: tea")

    linked = cli("memory", "link", "web:ann", "telegram:1")
    assert linked.stdout == "✓ linked telegram:1, web:ann: one person\n", linked.stderr
    shown = cli("memory", "show", "web:ann").stdout
    assert shown.startswith("web:ann is linked with telegram:1.\n")
    assert "prefers mornings" in shown
    assert "#1 priority: tea" in shown

    # The editor sees the notes of both identities, oldest first; a '#' note is escaped.
    rewrite = _editor(
        tmp_path / "rewrite",
        "assert 'notes of web:ann, telegram:1:' in text, text\n"
        "assert text.endswith('prefers mornings\\n\\\\#1 priority: tea\\n'), text\n"
        "path.write_text(text.replace('prefers mornings', 'prefers evenings') + 'new one\\n')",
    )
    cli.env.update(VISUAL="", EDITOR=rewrite)
    edited = cli("memory", "edit", "web:ann")
    assert edited.stdout == "✓ notes of web:ann: 1 kept, 2 added, 1 forgotten\n", edited.stderr

    # VISUAL wins over EDITOR; a failing editor, a bad note, or no change saves nothing.
    cli.env.update(VISUAL=_editor(tmp_path / "fails", "sys.exit(3)"))
    failed = cli("memory", "edit", "web:ann")
    assert failed.returncode == 1
    assert failed.stderr.startswith("❌ the editor")
    assert "status 3" in failed.stderr
    cli.env.update(VISUAL=_editor(tmp_path / "long", "path.write_text(text + 'x' * 1001)"))
    too_long = cli("memory", "edit", "web:ann")
    assert too_long.stderr.startswith("❌ the notes were not saved: line 9: the note is 1001")
    cli.env.update(VISUAL=_editor(tmp_path / "same", "pass"))
    assert cli("memory", "edit", "web:ann").stdout == "no change to the notes of web:ann\n"
    listed = json.loads(cli("memory", "show", "telegram:1", "--json").stdout)
    assert [(n["person"], n["text"]) for n in listed] == [
        ("web:ann", "new one"),
        ("web:ann", "prefers evenings"),
        ("telegram:1", "#1 priority: tea"),
    ]

    unlinked = cli("memory", "unlink", "telegram:1")
    assert unlinked.stdout == "✓ unlinked telegram:1 from web:ann\n"


async def test_edit_without_an_editor(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    cli.env.update(VISUAL="/nonexistent/editor")
    assert cli("memory", "edit", "telegram:2").stderr.startswith("❌ cannot run the editor")
    assert "2 added" in cli("memory", "edit", "telegram:2", "--set", "a", "--set", "b").stdout
    piped = cli("memory", "edit", "telegram:2", "--from", "-", stdin="# c\nb\n\\#c\n\n")
    assert piped.stdout == "✓ notes of telegram:2: 1 kept, 1 added, 1 forgotten\n"
    listed = json.loads(cli("memory", "show", "telegram:2", "--json").stdout)
    assert [n["text"] for n in listed] == ["#c", "b"]
    big = "".join("y" * 999 + f"{i}\n" for i in range(3))
    (tmp_path / "big.txt").write_text(big, encoding="utf-8")
    warned = cli("memory", "edit", "telegram:2", "--from", str(tmp_path / "big.txt"))
    assert warned.stdout.endswith(
        "⚠ only the newest 1 fit in the system prompt (2000 characters)\n"
    )
    missing = cli("memory", "edit", "telegram:2", "--from", str(tmp_path / "absent"))
    assert missing.stderr.startswith("❌ the notes were not saved: cannot read")
    assert len(json.loads(cli("memory", "show", "telegram:2", "--json").stdout)) == 3
