"""WASM skills: hello-wasm cold (compile), warm (cached) and as a native subprocess.

Run with ``nox --no-venv -s bench`` (or ``.venv/bin/python benchmarks/bench_wasm.py``). Figures are
printed, never asserted. Each figure is the median of ``--repeat`` samples of one tool call
through the runner's ``run`` (what the agent awaits):

- cold: a new runner with an empty module cache: compile (Cranelift) + instantiate + run;
- warm, disk cache: a new runner (new engine, as in a new process) whose cache directory
  holds the compiled module: deserialize + instantiate + run;
- warm, in memory: the same runner again: instantiate + run;
- subprocess: the same C source built natively with clang, run by core's subprocess runner
  (fork/exec of a child process per call).

Needs clang (Debian ``clang``) for the native build; the committed hello.wasm is used as is.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from openpista.skills.base import Skill
from openpista.skills.loader import load_skill
from openpista.skills.subprocess_runner import SubprocessSkillRunner
from openpista_wasm.runner import WasmSkillRunner
from openpista_wasm.settings import WasmSettings

HELLO = Path(__file__).resolve().parents[1] / "skills" / "hello-wasm"
ARGUMENTS = {"name": "benchmark"}
EXPECTED = "Hello, benchmark! (from WebAssembly)"


async def timed(call: Callable[[], Awaitable[str]]) -> float:
    """Seconds taken by one call, checking its answer."""
    started = time.perf_counter()
    output = await call()
    elapsed = time.perf_counter() - started
    if EXPECTED not in output:
        raise SystemExit(f"unexpected output: {output!r}")
    return elapsed


async def fresh_runner_call(skill: Skill, workspace: Path, cache_dir: Path) -> float:
    """One call through a new runner (new engine) using ``cache_dir``."""
    runner = WasmSkillRunner(WasmSettings(cache_dir=cache_dir), workspace)
    try:
        return await timed(lambda: runner.run(skill, ARGUMENTS, 60))
    finally:
        runner.close()


async def measure(repeat: int, root: Path) -> dict[str, list[float]]:
    skill = load_skill(HELLO / "SKILL.md")
    samples: dict[str, list[float]] = {
        "cold (compile + run)": [],
        "warm, disk cache (new engine)": [],
        "warm, in memory (same engine)": [],
        "subprocess (native build)": [],
    }
    for index in range(repeat):
        cache_dir = root / f"cache-{index}"
        samples["cold (compile + run)"].append(await fresh_runner_call(skill, root, cache_dir))
        samples["warm, disk cache (new engine)"].append(
            await fresh_runner_call(skill, root, cache_dir)
        )

    runner = WasmSkillRunner(WasmSettings(cache=False), root)
    try:
        await runner.run(skill, ARGUMENTS, 60)
        for _ in range(repeat * 4):
            samples["warm, in memory (same engine)"].append(
                await timed(lambda: runner.run(skill, ARGUMENTS, 60))
            )
    finally:
        runner.close()

    native = native_skill(root)
    subprocess_runner = SubprocessSkillRunner()
    for _ in range(repeat * 4):
        samples["subprocess (native build)"].append(
            await timed(lambda: subprocess_runner.run(native, ARGUMENTS, 60))
        )
    return samples


def native_skill(root: Path) -> Skill:
    """hello.c built for this machine, as a ``mode: subprocess`` skill."""
    clang = shutil.which("clang")
    if clang is None:
        raise SystemExit("clang is needed for the native build (apt-get install clang)")
    folder = root / "hello-native"
    folder.mkdir()
    binary = folder / "hello"
    subprocess.run([clang, "-O2", "-o", str(binary), str(HELLO / "hello.c")], check=True)
    return Skill(name="hello-native", description="", path=folder, entry=binary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repeat", type=int, default=5, help="samples per measurement")
    args = parser.parse_known_args()[0]
    with tempfile.TemporaryDirectory(prefix="openpista-bench-wasm-") as temp:
        samples = asyncio.run(measure(max(args.repeat, 1), Path(temp)))
    print(f"hello-wasm ({(HELLO / 'hello.wasm').stat().st_size:,} bytes), median of samples:")
    for label, values in samples.items():
        median = statistics.median(values) * 1000
        print(f"  {label:32} {median:8.2f} ms   (min {min(values) * 1000:.2f}, n={len(values)})")


if __name__ == "__main__":
    main()
