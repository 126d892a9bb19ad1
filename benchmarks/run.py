"""openpista benchmarks: print start-up, end-to-end and per-round figures.

Run with ``nox --no-venv -s bench`` (or ``.venv/bin/python benchmarks/run.py``). Figures are
printed, never asserted. Each measurement repeats and reports the median (and the max RSS).

- ``openpista --help``: wall time and peak RSS of the command, in a fresh process.
- ``openpista run -e``: one message end to end (process start, config, plugins, migrations,
  the provider, one LLM round trip to the local emulator, SQLite writes), through each client
  (httpx and litellm, docs/providers.md).
- agent overhead per tool round: an in-process agent against an instant scripted LLM, with
  a no-op tool and real SQLite memory, so what is measured is the loop itself.
- the gateway under load (instant LLM, then each provider client to the emulator, run in
  this process and then in its own), and the provider path alone: its CPU per streamed
  message, the emulator in another process.

``--only PART`` (repeatable) runs some of them (``gateway-llm``: the gateway through the
provider clients), ``--client`` limits the provider clients measured.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from channel_load import LoadRun, machine, print_figures, profiled

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.emulator import LlmEmulator
from openpista_testing.providers import InstantProvider

# A child forked from this process starts with this process's peak RSS as its own (Linux keeps
# the larger one across exec), so the measured command is started by a bare interpreter of
# ~9 MiB, which reports the command's wall time, exit code and peak RSS.
_SPAWNER = """
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{elapsed} {os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process (``argv[0]`` an absolute path)."""
    with tempfile.NamedTemporaryFile("r", prefix="openpista-bench-") as figures:
        process = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _SPAWNER, figures.name, *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        reported = figures.read().split()
    if process.returncode != 0 or reported[1:2] != ["0"]:
        raise SystemExit(f"{' '.join(argv)} failed: {process.stderr.decode()}")
    return float(reported[0]), int(reported[2])


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
    sessions: int, db: Path, base_url: str | None, client: str = "auto"
) -> LoadRun:
    """``sessions`` chats sending one message each at once, answered by the instant provider
    or, with ``base_url`` (an emulator's), by the ``openai`` preset over HTTP, its requests
    carried by ``client`` (``[providers.openai] client``: "http" or "litellm")."""
    from openpista.agent import Agent
    from openpista.config import AgentSettings, ProviderSettings, Settings
    from openpista.gateway.gateway import Gateway
    from openpista.plugins import PluginHost
    from openpista.runtime import Runtime
    from openpista_testing.adapters import LoopbackAdapter

    database = {"url": f"sqlite+aiosqlite:///{db}"}
    if base_url is None:
        settings = Settings(database=database)  # type: ignore[arg-type]
    else:
        openai = ProviderSettings(base_url=base_url, api_key="k", client=client)  # type: ignore[arg-type]
        settings = Settings(
            agent=AgentSettings(provider="openai", workspace=db.parent / "workspace"),
            database=database,  # type: ignore[arg-type]
            providers={"openai": openai},
        )
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    agent = (
        Agent(InstantProvider(rounds=0), runtime.toolbox.tools, runtime.memory)
        if base_url is None
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
    session_counts: tuple[int, ...],
    base_url: str | None = None,
    client: str = "auto",
    where: str = "",
) -> None:
    """Messages per second through the gateway (loopback channel), N sessions at once, each
    sending its first message, and the CPU of one message: with an instant LLM, or through
    ``client`` (httpx or litellm) to the emulator at ``base_url`` (what a real provider
    costs besides the network), which runs ``where`` (said in the figure)."""
    llm = "instant LLM" if base_url is None else f"{client} -> emulator {where}"
    for sessions in session_counts:
        with tempfile.TemporaryDirectory() as tmp:
            run = asyncio.run(_gateway_round(sessions, Path(tmp) / "gw.db", base_url, client))
        print_figures(f"gateway, {sessions} concurrent sessions", run, 1, llm)


async def _provider_round(
    base_url: str, client: str, requests: int, at_once: int, preset: str = "openai"
) -> float:
    """CPU seconds of this process per streamed request of ``preset`` (openai: ``base_url``
    is the OpenAI base URL; anthropic: its server root) through ``client``, ``at_once``
    requests in flight, to an emulator in another process."""
    from openpista.config import AgentSettings, ProviderSettings, Settings
    from openpista.models import Message
    from openpista.plugins import PluginHost
    from openpista.runtime import build_providers

    if preset == "anthropic":
        base_url = base_url.removesuffix("/v1")
    section = ProviderSettings(base_url=base_url, api_key="k", client=client)  # type: ignore[arg-type]
    settings = Settings(agent=AgentSettings(provider=preset), providers={preset: section})
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


@contextmanager
def emulator_process() -> Iterator[str]:
    """An LLM emulator in a process of its own (none of its CPU counted here): its OpenAI
    base URL."""
    emulator = subprocess.Popen(
        [sys.executable, "-m", "openpista_testing.emulator", "--port", "0", "--reply", "Hello!"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        yield f"{emulator.stdout.readline().strip()}/v1"
    finally:
        emulator.terminate()
        emulator.wait()


def bench_provider(
    base_url: str, clients: list[str], requests: int = 600, preset: str = "openai"
) -> None:
    """The provider path alone: its CPU per streamed message of ``preset`` through each
    client to the emulator at ``base_url`` (in its own process)."""
    for client in clients:
        for at_once in (10, 100):
            cpu = asyncio.run(_provider_round(base_url, client, requests, at_once, preset))
            label = f"provider alone, {preset} {client}, {at_once} at once"
            print(f"{label:<38} CPU {cpu * 1000:6.2f} ms/msg   {machine()}")


PARTS = ("help", "run", "agent", "gateway", "gateway-llm", "provider")
"""What ``--only`` selects: the figures of the module docstring, in its order."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--repeat", type=int, default=5, help="samples per measurement")
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only these figures (repeatable)"
    )
    parser.add_argument(
        "--client",
        action="append",
        choices=("http", "litellm"),
        help="the provider clients measured (repeatable; default both, litellm last)",
    )
    parser.add_argument(
        "--preset",
        choices=("openai", "anthropic"),
        default="openai",
        help="the preset of the provider-alone figures (its API: chat completions or messages)",
    )
    args = parser.parse_known_args()[0]
    parts = set(args.only or PARTS)
    # litellm last: once imported it stays (docs/providers.md).
    clients = sorted(set(args.client or ("http", "litellm")), key=("http", "litellm").index)
    with tempfile.TemporaryDirectory() as tmp, LlmEmulator(default_reply="Hello!") as emulator:
        cli = Cli.isolated(Path(tmp), emulator)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {machine()}")
        if "help" in parts:
            bench_help(args.repeat * 2, cli)
        for client in clients if "run" in parts else ():
            bench_run(args.repeat, cli, client)
        if "agent" in parts:
            bench_agent_overhead(turns=args.repeat * 4, rounds=5)
        if "gateway" in parts:
            bench_gateway((1, 100, 1000))
        if parts & {"gateway-llm", "provider"}:
            bench_clients(clients, emulator.openai_base_url, parts, args.preset)


def bench_clients(clients: list[str], in_process: str, parts: set[str], preset: str) -> None:
    """The gateway through each provider client (to the emulator at ``in_process``, then to
    one in its own process) and the provider path alone, as ``parts`` selects."""
    with emulator_process() as own:
        for client in clients:
            if "gateway-llm" in parts:
                # Its CPU counted too (as issue 26 first measured), then only openpista's.
                bench_gateway((100,), in_process, client, "in-process")
                bench_gateway((100,), own, client, "own process")
            if "provider" in parts:
                bench_provider(own, [client], preset=preset)


if __name__ == "__main__":
    main()
