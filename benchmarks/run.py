"""openpista benchmarks: print start-up, end-to-end and per-round figures.

Run with ``nox --no-venv -s bench`` (or ``.venv/bin/python benchmarks/run.py``). Figures are
printed, never asserted. Each measurement repeats and reports the median (and the max RSS).

- ``openpista --help``: wall time and peak RSS of the command, in a fresh process.
- ``openpista run -e``: one message end to end (process start, config, plugins, migrations,
  the provider, one LLM round trip to the local emulator, SQLite writes), through each client
  (httpx and litellm, docs/providers.md).
- agent overhead per tool round: an in-process agent against an instant scripted LLM, with
  a no-op tool and real SQLite memory, so what is measured is the loop itself.
- the gateway under load (instant LLM, then each provider client to the emulator), and the
  provider path alone: its CPU per streamed message, the emulator in another process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from channel_load import LoadRun, machine, print_figures, profiled

from openpista_testing.cli import OPENPISTA, Cli, emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.providers import InstantProvider


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    return elapsed, usage.ru_maxrss


def report(name: str, samples: list[tuple[float, int]]) -> None:
    times = [t for t, _ in samples]
    rss = max(r for _, r in samples)
    print(
        f"{name:<38} median {statistics.median(times) * 1000:8.1f} ms"
        f"   min {min(times) * 1000:8.1f} ms   peak RSS {rss / 1024:6.1f} MiB   (n={len(samples)})"
        f"   {machine()}"
    )


def bench_help(repeat: int, cli: Cli) -> None:
    report(
        "openpista --help",
        [run_measured([str(OPENPISTA), "--help"], cli.env) for _ in range(repeat)],
    )


def bench_run(repeat: int, cli: Cli, client: str = "auto") -> None:
    """``openpista run -e`` with ``[providers.openai] client`` set to ``client``."""
    config = cli.config.read_text()
    # [providers.openai] is the last table of the emulator's config: the line lands in it.
    cli.write_config(f'{config}\nclient = "{client}"\n')
    try:
        samples = [
            run_measured([str(OPENPISTA), "run", "-q", "-e", "hello"], cli.env)
            for _ in range(repeat)
        ]
    finally:
        cli.write_config(config)
    report(f"openpista run -e ({client} -> emulator)", samples)


async def _agent_overhead(turns: int, rounds: int, db: Path) -> list[float]:
    from openpista.agent import Agent
    from openpista.memory import MemoryStore
    from openpista.tools.registry import ToolRegistry, tool

    @tool("bench.noop")
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    registry = ToolRegistry()
    registry.register(noop)
    store = await MemoryStore.open(f"sqlite+aiosqlite:///{db}")
    agent = Agent(InstantProvider(rounds), registry, store, max_tool_rounds=rounds)
    per_round = []
    try:
        for turn in range(turns):
            started = time.perf_counter()
            await agent.run_turn(f"bench-{turn}", "go")
            per_round.append((time.perf_counter() - started) / rounds)
    finally:
        await store.close()
    return per_round


def bench_agent_overhead(turns: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        per_round = asyncio.run(_agent_overhead(turns, rounds, Path(tmp) / "bench.db"))
    label = "agent overhead per tool round"
    print(
        f"{label:<38} median {statistics.median(per_round) * 1000:8.2f} ms"
        f"   min {min(per_round) * 1000:8.2f} ms   ({turns} turns x {rounds} rounds, SQLite)"
        f"   {machine()}"
    )


async def _gateway_round(
    sessions: int, db: Path, emulator: LlmEmulator | None, client: str = "auto"
) -> LoadRun:
    """``sessions`` chats sending one message each at once, answered by the instant provider
    or, with ``emulator``, by the ``openai`` preset over HTTP to the emulator, its requests
    carried by ``client`` (``[providers.openai] client``: "http" or "litellm")."""
    from openpista.agent import Agent
    from openpista.config import Settings
    from openpista.gateway.gateway import Gateway
    from openpista.plugins import PluginHost
    from openpista.runtime import Runtime
    from openpista_testing.adapters import LoopbackAdapter

    if emulator is None:
        settings = Settings(database={"url": f"sqlite+aiosqlite:///{db}"})  # type: ignore[arg-type]
    else:
        settings = emulator_settings(emulator, db.parent)
        openai = settings.providers["openai"]
        settings.providers["openai"] = openai.model_copy(update={"client": client})
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    agent = (
        Agent(InstantProvider(rounds=0), runtime.toolbox.tools, runtime.memory)
        if emulator is None
        else None
    )
    adapter = LoopbackAdapter("bench:")
    gateway = Gateway(runtime, [adapter], agent=agent)
    await gateway.start()
    await gateway.wait_ready()

    async def one(chat: str) -> float:
        started = time.perf_counter()
        await adapter.say(chat, "hello")
        await adapter.answer(chat, wait=600)
        return time.perf_counter() - started

    try:
        await asyncio.gather(*(one(f"warm{i}") for i in range(min(sessions, 10))))
        with profiled() as cpu:
            started = time.perf_counter()
            latencies = await asyncio.gather(*(one(str(i)) for i in range(sessions)))
            elapsed = time.perf_counter() - started
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()
    return LoadRun(elapsed, list(latencies), cpu)


def bench_gateway(
    session_counts: tuple[int, ...], emulator: LlmEmulator | None = None, client: str = "auto"
) -> None:
    """Messages per second through the gateway (loopback channel), N sessions at once, each
    sending its first message, and the CPU of one message: with an instant LLM, or through
    ``client`` (httpx or litellm) to ``emulator`` (what a real provider costs besides the
    network)."""
    llm = "instant LLM" if emulator is None else f"{client} -> emulator"
    for sessions in session_counts:
        with tempfile.TemporaryDirectory() as tmp:
            run = asyncio.run(_gateway_round(sessions, Path(tmp) / "gw.db", emulator, client))
        print_figures(f"gateway, {sessions} concurrent sessions", run, 1, llm)


async def _provider_round(base_url: str, client: str, requests: int, at_once: int) -> float:
    """CPU seconds of this process per streamed request of the ``openpista`` preset through
    ``client``, ``at_once`` requests in flight, to an emulator in another process."""
    from openpista.config import AgentSettings, ProviderSettings, Settings
    from openpista.models import Message
    from openpista.plugins import PluginHost
    from openpista.runtime import build_providers

    section = ProviderSettings(base_url=base_url, api_key="k", client=client)  # type: ignore[arg-type]
    settings = Settings(agent=AgentSettings(provider="openai"), providers={"openai": section})
    registry = build_providers(PluginHost.load(entry_points=False))
    provider = registry.build(settings)
    conversation = [Message(role="user", content="hello")]
    slots = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with slots:
            async for _ in provider.stream(conversation, []):
                pass

    try:
        await asyncio.gather(*(one() for _ in range(at_once)))  # connections, imports
        started = time.process_time()
        await asyncio.gather(*(one() for _ in range(requests)))
        return (time.process_time() - started) / requests
    finally:
        await registry.aclose()


def bench_provider(requests: int = 600) -> None:
    """The provider path alone: its CPU per streamed message through each client, the
    emulator in a process of its own (so that none of its CPU is counted)."""
    emulator = subprocess.Popen(
        [sys.executable, "-m", "openpista_testing.emulator", "--port", "0", "--reply", "Hello!"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        base_url = f"{emulator.stdout.readline().strip()}/v1"
        for client in ("http", "litellm"):
            for at_once in (10, 100):
                cpu = asyncio.run(_provider_round(base_url, client, requests, at_once))
                label = f"provider alone, {client}, {at_once} at once"
                print(f"{label:<38} CPU {cpu * 1000:6.2f} ms/msg   {machine()}")
    finally:
        emulator.terminate()
        emulator.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--repeat", type=int, default=5, help="samples per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LlmEmulator(default_reply="Hello!") as emulator:
        cli = Cli.isolated(Path(tmp), emulator)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {machine()}")
        bench_help(args.repeat * 2, cli)
        for client in ("http", "litellm"):
            bench_run(args.repeat, cli, client)
        bench_agent_overhead(turns=args.repeat * 4, rounds=5)
        bench_gateway((1, 100, 1000))
        # The two provider paths (docs/providers.md); litellm last: once imported it stays.
        bench_gateway((100,), emulator, "http")
        bench_provider()
        bench_gateway((100,), emulator, "litellm")


if __name__ == "__main__":
    main()
