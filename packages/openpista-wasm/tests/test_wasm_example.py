"""skills/hello-wasm: the committed module matches its source, rebuilt here with clang."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from openpista.skills.base import Skill
from openpista.skills.loader import SkillLoader
from openpista_wasm.runner import WasmSkillRunner

ARGUMENT_SETS: list[dict[str, str]] = [
    {},
    {"name": "Grace"},
    {"name": 'quote " and \\ backslash, tab\\t, ünïcode ✓'},
    {"name": "Linus", "file": "notes.txt"},
    {"file": "/workspace/notes.txt"},
]


async def outcome(runner: WasmSkillRunner, skill: Skill, arguments: dict[str, str]) -> str:
    try:
        return "ok: " + await runner.run(skill, arguments, 60)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def test_rebuilt_example_behaves_like_the_committed_one(
    tmp_path: Path,
    runner: WasmSkillRunner,
    hello: Skill,
    clang_build: Callable[[Path, Path], Path],
) -> None:
    rebuilt_dir = tmp_path / "rebuilt"
    rebuilt_dir.mkdir()
    (rebuilt_dir / "SKILL.md").write_text((hello.path / "SKILL.md").read_text())
    clang_build(hello.path / "hello.c", rebuilt_dir / "hello.wasm")
    [rebuilt] = SkillLoader(rebuilt_dir).discover().skills
    cases = [*ARGUMENT_SETS, {"file": "no-such-file.txt"}]
    for arguments in cases:
        committed = await outcome(runner, hello, arguments)
        assert committed == await outcome(runner, rebuilt, arguments), arguments
    assert await outcome(runner, hello, {"file": "no-such-file.txt"}) == (
        "ToolError: Hello, world! (from WebAssembly) Cannot read no-such-file.txt: "
        "No such file or directory"
    )


def test_example_is_discovered_as_a_wasm_skill(hello: Skill) -> None:
    scan = SkillLoader(hello.path.parent).discover()
    assert scan.problems == []
    [found] = [skill for skill in scan.skills if skill.name == "hello-wasm"]
    assert found.mode == "wasm"
    assert found.metadata == {"timeout": 5, "memory_mb": 16}


@pytest.mark.parametrize("arguments", ARGUMENT_SETS[:3])
async def test_example_escapes_its_output(
    runner: WasmSkillRunner, hello: Skill, arguments: dict[str, str]
) -> None:
    name = arguments.get("name", "world")
    assert await runner.run(hello, arguments, 60) == f"Hello, {name}! (from WebAssembly)"
