"""The compiled-module cache: a second runner (a new process) loads instead of compiling."""

from __future__ import annotations

import stat
from pathlib import Path

from openpista.skills.base import Skill
from openpista_wasm.cache import SUFFIX, engine_fingerprint
from openpista_wasm.runner import WasmSkillRunner
from openpista_wasm.settings import WasmSettings


async def run_once(settings: WasmSettings, workspace: Path, skill: Skill) -> WasmSkillRunner:
    runner = WasmSkillRunner(settings, workspace)
    try:
        assert await runner.run(skill, {"name": "cache"}, 60) == "Hello, cache! (from WebAssembly)"
    finally:
        runner.close()
    return runner


async def test_second_run_does_not_recompile(workspace: Path, tmp_path: Path, hello: Skill) -> None:
    settings = WasmSettings(cache_dir=tmp_path / "cache")
    first = await run_once(settings, workspace, hello)
    assert (first.stats.compiled, first.stats.loaded_from_disk) == (1, 0)
    [cached] = (tmp_path / "cache").glob(f"*{SUFFIX}")
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    written = cached.stat().st_mtime_ns

    second = await run_once(settings, workspace, hello)
    assert (second.stats.compiled, second.stats.loaded_from_disk) == (0, 1)
    assert cached.stat().st_mtime_ns == written
    assert list((tmp_path / "cache").iterdir()) == [cached]  # no temp files left behind


async def test_same_runner_reuses_the_module_in_memory(
    runner: WasmSkillRunner, hello: Skill
) -> None:
    for _ in range(3):
        await runner.run(hello, {}, 60)
    stats = runner.stats
    assert (stats.compiled, stats.loaded_from_disk, stats.reused_in_memory) == (1, 0, 2)


async def test_a_changed_module_is_compiled_again(
    workspace: Path, tmp_path: Path, hello: Skill
) -> None:
    assert hello.entry is not None
    settings = WasmSettings(cache_dir=tmp_path / "cache")
    await run_once(settings, workspace, hello)
    changed = tmp_path / "skill"
    changed.mkdir()
    # A custom section changes the bytes, not the behaviour.
    data = hello.entry.read_bytes() + b"\x00\x05\x04note"
    (changed / "hello.wasm").write_bytes(data)
    other = Skill(
        name="changed", description="", path=changed, mode="wasm", entry=changed / "hello.wasm"
    )
    runner = await run_once(settings, workspace, other)
    assert runner.stats.compiled == 1
    assert len(list((tmp_path / "cache").glob(f"*{SUFFIX}"))) == 2


async def test_a_corrupt_cache_file_is_recompiled(
    workspace: Path, tmp_path: Path, hello: Skill
) -> None:
    settings = WasmSettings(cache_dir=tmp_path / "cache")
    await run_once(settings, workspace, hello)
    [cached] = (tmp_path / "cache").glob(f"*{SUFFIX}")
    cached.write_bytes(b"not machine code")
    runner = await run_once(settings, workspace, hello)
    assert (runner.stats.compiled, runner.stats.loaded_from_disk) == (1, 0)
    assert cached.read_bytes() != b"not machine code"


async def test_cache_can_be_off(workspace: Path, tmp_path: Path, hello: Skill) -> None:
    settings = WasmSettings(cache=False, cache_dir=tmp_path / "cache")
    first = await run_once(settings, workspace, hello)
    second = await run_once(settings, workspace, hello)
    assert first.stats.compiled == second.stats.compiled == 1
    assert not (tmp_path / "cache").exists()


async def test_unwritable_cache_still_runs(workspace: Path, tmp_path: Path, hello: Skill) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    runner = await run_once(WasmSettings(cache_dir=blocker / "cache"), workspace, hello)
    assert runner.stats.compiled == 1


def test_fingerprint_names_version_and_options() -> None:
    one = engine_fingerprint({"epoch_interruption": True})
    assert "wasmtime=" in one
    assert one != engine_fingerprint({"epoch_interruption": False})
