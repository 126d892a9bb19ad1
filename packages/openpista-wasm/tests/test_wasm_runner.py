"""The wasm runner with real modules: ABI round trip, sandbox, limits, traps, bad output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from openpista.skills.base import Skill
from openpista.tools.base import ToolError
from openpista_wasm.runner import WasmSkillRunner, parse_result
from openpista_wasm.settings import WasmSettings

Guests = Callable[[str], Path]
MakeSkill = Callable[..., Skill]


async def test_hello_round_trip(runner: WasmSkillRunner, hello: Skill) -> None:
    assert hello.mode == "wasm"
    assert hello.entry is not None
    assert hello.entry.name == "hello.wasm"
    output = await runner.run(hello, {"name": 'Ada "the first" Lovelace'}, 60)
    assert output == 'Hello, Ada "the first" Lovelace! (from WebAssembly)'
    assert await runner.run(hello, {}, 60) == "Hello, world! (from WebAssembly)"


async def test_reads_a_workspace_file_relative_and_absolute(
    runner: WasmSkillRunner, hello: Skill
) -> None:
    relative = await runner.run(hello, {"name": "Bo", "file": "notes.txt"}, 60)
    assert relative.endswith("The first line of notes.txt is: first line of the notes")
    absolute = await runner.run(hello, {"file": "/workspace/notes.txt"}, 60)
    assert absolute.endswith("is: first line of the notes")


@pytest.mark.parametrize("outside", ["../outside.txt", "/etc/hostname", "/workspace/../x"])
async def test_nothing_outside_the_workspace_is_visible(
    runner: WasmSkillRunner, hello: Skill, workspace: Path, outside: str
) -> None:
    (workspace.parent / "outside.txt").write_text("secret\n")
    (workspace.parent / "x").write_text("secret\n")
    with pytest.raises(ToolError) as failure:
        await runner.run(hello, {"file": outside}, 60)
    message = str(failure.value)
    assert f"Cannot read {outside}" in message
    assert "secret" not in message


async def test_symlinks_cannot_lead_out_of_the_workspace(
    runner: WasmSkillRunner, hello: Skill, workspace: Path
) -> None:
    secret = workspace.parent / "secret.txt"
    secret.write_text("the secret\n")
    (workspace / "inside-link").symlink_to("notes.txt")
    (workspace / "relative-escape").symlink_to("../secret.txt")
    (workspace / "absolute-escape").symlink_to(secret)
    inside = await runner.run(hello, {"file": "inside-link"}, 60)
    assert inside.endswith("is: first line of the notes")
    for link in ("relative-escape", "absolute-escape"):
        with pytest.raises(ToolError) as failure:
            await runner.run(hello, {"file": link}, 60)
        assert f"Cannot read {link}: Operation not permitted" in str(failure.value)
        assert "the secret" not in str(failure.value)


async def test_write_attempts_are_refused(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill, workspace: Path
) -> None:
    skill = make_skill("writer", guests("write_file"))
    before = (workspace / "notes.txt").read_text()
    output = await runner.run(skill, {}, 60)
    parts = dict(part.split("=", 1) for part in output.split("; "))
    assert set(parts) == {"relative", "absolute", "append"}
    assert "written" not in parts.values(), output
    assert not (workspace / "created-by-wasm.txt").exists()
    assert (workspace / "notes.txt").read_text() == before


async def test_infinite_loop_is_stopped_by_the_time_bound(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill
) -> None:
    skill = make_skill("spin", guests("spin"), "timeout: 0.3\n")
    with pytest.raises(ToolError, match=r"skill spin ran longer than its 0\.3 s time bound"):
        await runner.run(skill, {}, 60)
    # The runner (and the event loop) are fine afterwards.
    guard = asyncio.create_task(asyncio.sleep(0))
    await guard


async def test_the_callers_timeout_caps_the_skills_own(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill
) -> None:
    skill = make_skill("spin", guests("spin"), "timeout: 3600\n")
    with pytest.raises(ToolError, match=r"its 0\.2 s time bound"):
        await runner.run(skill, {}, 0.2)


async def test_event_loop_stays_free_while_a_module_runs(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill
) -> None:
    skill = make_skill("spin", guests("spin"), "timeout: 1\n")
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    counter = asyncio.create_task(count())
    with pytest.raises(ToolError, match="time bound"):
        await runner.run(skill, {}, 60)
    counter.cancel()
    assert ticks > 5


async def test_a_guest_blocked_in_a_host_call_is_abandoned(
    guests: Guests, make_skill: MakeSkill, workspace: Path
) -> None:
    skill = make_skill("sleeper", guests("sleeper"), "timeout: 0.2\n")
    impatient = WasmSkillRunner(WasmSettings(cache=False), workspace, stop_grace=0.3)
    try:
        with pytest.raises(ToolError, match=r"skill sleeper did not stop within 0\.2 s"):
            await impatient.run(skill, {}, 60)
    finally:
        impatient.close()  # deferred until the sleeping run returns


async def test_memory_bomb_is_stopped_by_the_cap(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill
) -> None:
    skill = make_skill("bomb", guests("memory_bomb"), "memory_mb: 8\n")
    with pytest.raises(ToolError) as failure:
        await runner.run(skill, {}, 60)
    message = str(failure.value)
    assert "skill bomb crashed: wasm trap (unreachable): wasm `unreachable`" in message
    assert "of its 8 MB cap (an allocation was refused" in message
    assert "out of memory after" in message  # the guest's stderr


async def test_default_memory_cap_is_64_mb(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill
) -> None:
    skill = make_skill("bomb", guests("memory_bomb"))
    with pytest.raises(ToolError, match="of its 64 MB cap") as failure:
        await runner.run(skill, {}, 60)
    mib = int(str(failure.value).split("out of memory after ")[1].split()[0])
    assert 50 < mib < 64


async def test_bad_json_output_is_a_tool_error_quoting_it(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill
) -> None:
    skill = make_skill("babbler", guests("bad_json"))
    with pytest.raises(ToolError) as failure:
        await runner.run(skill, {}, 60)
    message = str(failure.value)
    assert "skill babbler printed no valid JSON result" in message
    assert "Hello! {this is not json" in message


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({}, "unreachable): wasm `unreachable` instruction executed"),
        ({"mode": "oob"}, "memory out of bounds): out of bounds memory access"),
    ],
)
async def test_traps_are_tool_errors_naming_the_trap(
    runner: WasmSkillRunner,
    guests: Guests,
    make_skill: MakeSkill,
    arguments: dict[str, str],
    code: str,
) -> None:
    skill = make_skill("trapper", guests("trap"))
    with pytest.raises(ToolError) as failure:
        await runner.run(skill, arguments, 60)
    message = str(failure.value)
    assert f"skill trapper crashed: wasm trap ({code}" in message
    assert "about to trap" in message
    assert "MB cap" not in message
    # A trap leaves the runner usable.
    skill_ok = make_skill("still-fine", guests("write_file"))
    assert "relative=" in await runner.run(skill_ok, {}, 60)


async def test_non_zero_exit_is_an_error_with_stderr(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill
) -> None:
    skill = make_skill("quitter", guests("exit_code"))
    with pytest.raises(ToolError, match="skill quitter exited with code 3; stderr:\ngave up"):
        await runner.run(skill, {}, 60)


async def test_guest_reported_error_is_a_tool_error(runner: WasmSkillRunner, hello: Skill) -> None:
    with pytest.raises(ToolError, match=r"Cannot read missing\.txt: No such file or directory"):
        await runner.run(hello, {"file": "missing.txt"}, 60)


async def test_oversized_output_is_refused(workspace: Path, hello: Skill) -> None:
    small = WasmSkillRunner(WasmSettings(max_stdout_bytes=1024, cache=False), workspace)
    try:
        with pytest.raises(ToolError, match="printed more than 1,024 bytes on stdout"):
            await small.run(hello, {"name": "x" * 5000}, 60)
    finally:
        small.close()


async def test_a_stdout_flood_is_stopped_at_the_limit(
    workspace: Path, guests: Guests, make_skill: MakeSkill
) -> None:
    # timeout: 3600 — only the output limit can end this run within the test's patience.
    skill = make_skill("flood", guests("flood"), "timeout: 3600\n")
    flooded = WasmSkillRunner(WasmSettings(max_stdout_bytes=100_000, cache=False), workspace)
    try:
        with pytest.raises(ToolError) as failure:
            await asyncio.wait_for(flooded.run(skill, {}, 3600), 60)
    finally:
        flooded.close()
    assert str(failure.value) == (
        "skill flood was stopped: output limit exceeded (it printed more than 100,000 bytes "
        "on stdout; the limit is max_stdout_bytes in [skills.wasm])"
    )


def test_the_flood_stops_at_the_write_that_crosses_the_limit(
    workspace: Path, guests: Guests
) -> None:
    import wasmtime

    from openpista_wasm.sandbox import EpochTicker, execute, workspace_mounts
    from openpista_wasm.settings import Limits

    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    ticker = EpochTicker(engine)
    ticker.acquire()
    try:
        outcome = execute(
            engine,
            wasmtime.Module.from_file(engine, str(guests("flood"))),
            program="flood",
            stdin=b"{}",
            mounts=workspace_mounts(workspace),
            limits=Limits(timeout=3600, memory_bytes=2**24),
            max_stdout_bytes=100_000,
        )
    finally:
        ticker.release()
        ticker.close()
        engine.close()
    assert outcome.stdout_overflowed
    assert outcome.stdout == b"x" * 100_000
    # The guest writes 64 KiB at a time: the second write crosses the limit and is its last.
    assert outcome.stdout_seen == 2 * 65_536
    assert not outcome.interrupted


async def test_long_output_is_clipped(workspace: Path, hello: Skill) -> None:
    (workspace / "notes.txt").write_text("y" * 400 + "\n")
    clipping = WasmSkillRunner(WasmSettings(max_output_chars=100, cache=False), workspace)
    try:
        output = await clipping.run(hello, {"file": "notes.txt"}, 60)
    finally:
        clipping.close()
    assert "characters truncated" in output
    assert len(output) < 200


async def test_not_a_wasm_module(
    make_skill: MakeSkill, runner: WasmSkillRunner, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.wasm"
    fake.write_bytes(b"\0asm garbage")
    skill = make_skill("fake", fake)
    with pytest.raises(ToolError, match=r"fake\.wasm is not a valid WebAssembly module"):
        await runner.run(skill, {}, 60)


async def test_a_module_without_start_is_refused(
    make_skill: MakeSkill, runner: WasmSkillRunner, tmp_path: Path
) -> None:
    import wasmtime

    library = tmp_path / "library.wasm"
    library.write_bytes(wasmtime.wat2wasm('(module (func (export "add")))'))
    skill = make_skill("library", library)
    with pytest.raises(ToolError, match="exports no `_start` function"):
        await runner.run(skill, {}, 60)


async def test_module_needing_more_memory_than_the_cap_cannot_start(
    make_skill: MakeSkill, runner: WasmSkillRunner, tmp_path: Path
) -> None:
    import wasmtime

    big = tmp_path / "big.wasm"
    big.write_bytes(wasmtime.wat2wasm('(module (memory 256) (func (export "_start")))'))
    skill = make_skill("big", big, "memory_mb: 4\n")
    with pytest.raises(ToolError, match=r"skill big cannot start: .*its memory cap is 4 MB"):
        await runner.run(skill, {}, 60)


async def test_imports_other_than_wasi_are_refused(
    make_skill: MakeSkill, runner: WasmSkillRunner, tmp_path: Path
) -> None:
    import wasmtime

    module = tmp_path / "escape.wasm"
    module.write_bytes(
        wasmtime.wat2wasm(
            '(module (import "env" "system" (func)) (memory (export "memory") 1)'
            ' (func (export "_start")))'
        )
    )
    skill = make_skill("escape", module)
    with pytest.raises(ToolError, match=r"skill escape cannot start: .*env::system"):
        await runner.run(skill, {}, 60)


async def test_entry_must_be_a_wasm_file(runner: WasmSkillRunner, workspace: Path) -> None:
    from openpista.skills.loader import load_skill

    folder = workspace / "script"
    folder.mkdir()
    (folder / "run.sh").write_text("echo hi\n")
    (folder / "SKILL.md").write_text("---\nmode: wasm\n---\nA script.\n")
    with pytest.raises(ToolError, match=r"needs a \.wasm entry"):
        await runner.run(load_skill(folder / "SKILL.md"), {}, 60)


@pytest.mark.parametrize(
    ("front_matter", "problem"),
    [
        ("timeout: soon\n", "`timeout` in SKILL.md must be a number"),
        ("timeout: 0\n", "`timeout` in SKILL.md must be above 0"),
        ("memory_mb: 5000\n", "`memory_mb` in SKILL.md must be above 1 and at most 4096"),
        ("memory_mb: true\n", "`memory_mb` in SKILL.md must be a number"),
    ],
)
async def test_bad_limits_in_front_matter(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill, front_matter: str, problem: str
) -> None:
    skill = make_skill("limited", guests("write_file"), front_matter)
    with pytest.raises(ToolError, match=problem):
        await runner.run(skill, {}, 60)


@pytest.mark.parametrize(
    ("stdout", "problem"),
    [
        (b"", "printed nothing"),
        (b"[1, 2]", 'must print an object with a string "output"'),
        (b'{"output": 3}', 'must print an object with a string "output"'),
        (b'{"output": "x", "is_error": "no"}', '"is_error" must be true or false'),
        (b'{"output": "x"} trailing', "printed no valid JSON result (Extra data"),
    ],
)
def test_parse_result_rejects_malformed_results(stdout: bytes, problem: str) -> None:
    with pytest.raises(ToolError) as failure:
        parse_result("skill s", stdout)
    assert problem in str(failure.value)


def test_parse_result_accepts_the_abi_and_ignores_extra_keys() -> None:
    payload = json.dumps({"output": "ok ✓", "is_error": True, "version": 1}).encode()
    assert parse_result("skill s", payload) == ("ok ✓", True)
    assert parse_result("skill s", b'  {"output": ""}\n') == ("", False)


def test_malformed_output_quote_is_short() -> None:
    with pytest.raises(ToolError) as failure:
        parse_result("skill s", b"z" * 10_000)
    assert len(str(failure.value)) < 500


async def test_close_stops_the_epoch_thread(workspace: Path, hello: Skill) -> None:
    import threading

    runner = WasmSkillRunner(WasmSettings(cache=False), workspace)
    await runner.run(hello, {}, 60)
    assert any(thread.name == "wasm-epoch" for thread in threading.enumerate())
    runner.close()
    assert not any(thread.name == "wasm-epoch" for thread in threading.enumerate())
    # A closed runner starts again on the next call.
    assert await runner.run(hello, {"name": "again"}, 60) == "Hello, again! (from WebAssembly)"
    runner.close()


async def test_runs_overlap_with_their_own_deadlines(
    runner: WasmSkillRunner, guests: Guests, make_skill: MakeSkill, hello: Skill
) -> None:
    spin = make_skill("spin", guests("spin"), "timeout: 1\n")
    spinning = asyncio.create_task(runner.run(spin, {}, 60))
    greetings = [await runner.run(hello, {"name": str(n)}, 60) for n in range(5)]
    assert greetings == [f"Hello, {n}! (from WebAssembly)" for n in range(5)]
    assert not spinning.done()
    with pytest.raises(ToolError, match="time bound"):
        await spinning


async def test_main_wasm_is_the_default_entry(runner: WasmSkillRunner, workspace: Path) -> None:
    from openpista.skills.loader import load_skill

    folder = workspace / "plain"
    folder.mkdir()
    (folder / "main.wasm").write_bytes(
        (Path(__file__).parents[3] / "skills/hello-wasm/hello.wasm").read_bytes()
    )
    (folder / "SKILL.md").write_text("---\nmode: wasm\n---\nGreets.\n")
    skill = load_skill(folder / "SKILL.md")
    assert await runner.run(skill, {"name": "main"}, 60) == "Hello, main! (from WebAssembly)"
