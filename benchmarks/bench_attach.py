"""Every figure of issue 16 with its target: ``openpista run -e "hi"`` through a running
daemon's control socket and cold (no daemon), ``openpista --help``, the daemon's start until
its web channel answers HTTP (and until it is ready), and the gateway's per-message overhead
through the web channel against an instant LLM (p50, p95). Beside the cold figure: nanobot's
single shot (``nanobot agent -m "hi"``, benchmarks/nanobot.py), its runs interleaved with
openpista's (``--no-nanobot`` leaves it out).

Run with ``nox --no-venv -s bench`` (or ``.venv/bin/python benchmarks/bench_attach.py``).
The runs go against the LLM emulator, side by side in one run; a process figure is the
median wall time and the peak RSS of the ``openpista`` process. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_web import web_round
from channel_load import machine
from nanobot import VERSION, Shots, compared
from run import run_measured

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import DEADLINE, Daemon
from openpista_testing.emulator import LlmEmulator

TARGETS = {"attached": (0.25, 45.0), "cold": (1.0, 120.0)}
"""Wall seconds and peak MiB each figure should stay under."""
HELP_TARGET = 0.1
"""Wall seconds of ``openpista --help``."""
READY_TARGET = 1.0
"""Wall seconds from ``openpista start`` until its web channel answers HTTP."""
WEB = '\n[channels.web]\nenabled = true\nport = 0\ntoken = "bench-token"\n'


COLD_CLIENTS = {
    "http": "cold",
    "litellm": "cold litellm",
    "anthropic": "cold anthropic",
    "anthropic-litellm": "cold anth. litellm",
    "plugins": "cold, all plugins",
}
"""The cold figures by provider client (docs/providers.md): ``cold`` the openai preset
through openpista's httpx client (what ``client = "auto"`` picks), ``cold litellm`` the same
through litellm, ``cold anthropic`` the anthropic preset (Messages API) through httpx (what
``auto`` picks), ``cold anth. litellm`` the same through litellm; ``cold, all plugins`` as
``cold`` with every installed plugin loaded, as a user who installed them all has it (the
other figures load none: ``OPENPISTA_LOAD_PLUGINS=""``)."""


def cold_cli(home: Path, emulator: LlmEmulator, client: str) -> Cli:
    """A CLI answering through ``client`` (a :data:`COLD_CLIENTS` key) to ``emulator``."""
    cli = Cli.isolated(home, emulator)
    config = cli.config.read_text()
    if client.endswith("litellm"):
        config += '\nclient = "litellm"\n'  # the last table is the provider's
    if client.startswith("anthropic"):
        config = (
            config.replace('provider = "openai"', 'provider = "anthropic"')
            .replace("[providers.openai]", "[providers.anthropic]")
            .replace(emulator.openai_base_url, emulator.anthropic_base_url)
            .replace('model = "gpt-4o-mini"', 'model = "claude-3-5-haiku-latest"')
        )
    cli.write_config(config)
    if client == "plugins":
        del cli.env["OPENPISTA_LOAD_PLUGINS"]
    return cli


def report(name: str, samples: list[tuple[float, int]], target: tuple[float, float]) -> None:
    wall = statistics.median(t for t, _ in samples)
    rss = max(r for _, r in samples) / 1024
    seconds, mib = target
    print(
        f'openpista run -e "hi", {name:<14} median {wall * 1000:7.1f} ms (target <= '
        f"{seconds * 1000:.0f} ms)   peak RSS {rss:6.1f} MiB (target <= {mib:.0f} MiB)"
        f"   (n={len(samples)})   {machine()}"
    )


def report_nanobot(shots: Shots, cold: list[tuple[float, int]]) -> None:
    """nanobot's single shot (or why it is missing) next to openpista's ``cold`` figure."""
    label = f'nanobot {VERSION} agent -m "hi"'
    if shots.failure or not shots.samples:
        print(f"{label:<37} not measured: {shots.failure or 'no samples'}")
        return
    figures = [
        (statistics.median(t for t, _ in runs), max(r for _, r in runs) / 1024)
        for runs in (shots.samples, cold)
    ]
    wall, rss = figures[0]
    print(
        f"{label:<37} median {wall * 1000:7.1f} ms{'':<20}   peak RSS {rss:6.1f} MiB{'':<18}"
        f"   (n={len(shots.samples)})   {machine()}"
    )
    print(f"{'':<37} {compared(figures[1], figures[0])} (cold, same run)")


def wait_ready(cli: Cli, daemon: Daemon) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        status = cli("status", "--json")
        if status.returncode == 0 and json.loads(status.stdout)["ready"]:
            return
        if daemon.process.poll() is not None:
            raise SystemExit(f"the daemon exited:\n{daemon.output()}")
        time.sleep(0.2)
    raise SystemExit("the daemon never became ready")


def daemon_start(cli: Cli) -> tuple[float, float]:
    """Seconds from ``openpista start`` until its web channel answers HTTP at all, and
    until ``/api/health`` says ready (the provider warm)."""
    started = time.perf_counter()
    daemon = Daemon(cli, "--no-terminal")
    try:
        url = daemon.wait_for("the web channel listens on http://").rsplit(" ", 1)[1].strip()
        answered = None
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=DEADLINE):
                    ready = time.perf_counter() - started
                    return answered or ready, ready
            except urllib.error.HTTPError:  # 503: listening, the provider still warms up
                answered = answered or time.perf_counter() - started
            except OSError:
                if daemon.process.poll() is not None:
                    raise SystemExit(f"the daemon exited:\n{daemon.output()}") from None
            time.sleep(0.01)
    finally:
        daemon.stop()


def report_seconds(name: str, samples: list[float], target: str) -> None:
    print(
        f"{name:<37} median {statistics.median(samples) * 1000:7.1f} ms ({target})"
        f"   (n={len(samples)})   {machine()}"
    )


def bench_overhead(messages: int) -> None:
    """The gateway's per-message overhead: one web client, an instant LLM, SQLite."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        run = asyncio.run(web_round(1, messages, Path(tmp) / "web.db", Path(tmp)))
    latencies = sorted(run.latencies)
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000
    print(
        f"{'gateway overhead per message':<37} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms"
        f"   (target: none set by the issue; web channel, instant LLM, SQLite,"
        f" n={len(latencies)})   {machine()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--repeat", type=int, default=5, help="samples per measurement")
    parser.add_argument("--no-nanobot", action="store_true", help="leave out nanobot's single shot")
    args, _ = parser.parse_known_args()
    with LlmEmulator() as emulator, tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        cli = Cli.isolated(Path(tmp) / "home", emulator)
        hi = [str(OPENPISTA), "run", "-e", "hi"]
        # Cold through each provider client, alternately: openpista's httpx client (what
        # `auto` picks) and litellm, for OpenAI's API and for Anthropic's.
        colds = {name: cold_cli(Path(tmp) / name, emulator, name) for name in COLD_CLIENTS}
        for other in colds.values():
            run_measured([str(OPENPISTA), "--no-daemon", *hi[1:]], other.env)  # the database
        nanobot = (
            Shots(None, failure="left out (--no-nanobot)")
            if args.no_nanobot
            else Shots.start(Path(tmp) / "nanobot", emulator, hi[-1])
        )
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in colds}
        for _ in range(args.repeat):
            for name, other in colds.items():
                samples[name].append(
                    run_measured([str(OPENPISTA), "--no-daemon", *hi[1:]], other.env)
                )
                if name == "http":
                    nanobot.shoot()  # right after `cold`, under the same load
        nanobot.stop()
        daemon = Daemon(cli)
        try:
            wait_ready(cli, daemon)
            attached = [run_measured(hi, cli.env) for _ in range(args.repeat)]
        finally:
            daemon.stop()
        every_plugin = {k: v for k, v in cli.env.items() if k != "OPENPISTA_LOAD_PLUGINS"}
        helps: dict[str, list[tuple[float, int]]] = {"no plugins": [], "all plugins": []}
        for _ in range(args.repeat):
            helps["no plugins"].append(run_measured([str(OPENPISTA), "--help"], cli.env))
            helps["all plugins"].append(run_measured([str(OPENPISTA), "--help"], every_plugin))
        cli.write_config(cli.config.read_text() + WEB)
        cli.env["OPENPISTA_LOAD_PLUGINS"] = "web"
        starts = [daemon_start(cli) for _ in range(args.repeat)]
    report("attached", attached, TARGETS["attached"])
    for name, label in COLD_CLIENTS.items():
        report(label, samples[name], TARGETS["cold"])
        if name == "http":
            report_nanobot(nanobot, samples[name])
    for plugins, shots in helps.items():
        wall = statistics.median(t for t, _ in shots)
        print(
            f"openpista --help, {plugins:<18} median {wall * 1000:7.1f} ms (target <= "
            f"{HELP_TARGET * 1000:.0f} ms)   peak RSS {max(r for _, r in shots) / 1024:6.1f} MiB"
            f"   (n={len(shots)})   {machine()}"
        )
    target = f"target <= {READY_TARGET * 1000:.0f} ms"
    report_seconds("daemon start: web answers HTTP", [http for http, _ in starts], target)
    report_seconds("daemon start: ready (warm LLM)", [ready for _, ready in starts], "no target")
    bench_overhead(messages=args.repeat * 40)


if __name__ == "__main__":
    main()
