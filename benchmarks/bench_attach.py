"""``openpista run -e "hi"`` through a running daemon's control socket, cold (no daemon), and
``openpista --help``.

Run with ``nox --no-venv -s bench`` (or ``.venv/bin/python benchmarks/bench_attach.py``).
Both against the LLM emulator, side by side in one run; each figure is the median wall time
and the peak RSS of the ``openpista`` process, printed with its target (issue 16). Printed,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from channel_load import machine
from run import run_measured

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import DEADLINE, Daemon
from openpista_testing.emulator import LlmEmulator

TARGETS = {"attached": (0.25, 45.0), "cold": (1.0, 120.0)}
"""Wall seconds and peak MiB each figure should stay under."""
HELP_TARGET = 0.1
"""Wall seconds of ``openpista --help``."""


def report(name: str, samples: list[tuple[float, int]], target: tuple[float, float]) -> None:
    wall = statistics.median(t for t, _ in samples)
    rss = max(r for _, r in samples) / 1024
    seconds, mib = target
    print(
        f'openpista run -e "hi", {name:<9} median {wall * 1000:7.1f} ms (target <= '
        f"{seconds * 1000:.0f} ms)   peak RSS {rss:6.1f} MiB (target <= {mib:.0f} MiB)"
        f"   (n={len(samples)})   {machine()}"
    )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--repeat", type=int, default=5, help="samples per measurement")
    args, _ = parser.parse_known_args()
    with LlmEmulator() as emulator, tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        cli = Cli.isolated(Path(tmp) / "home", emulator)
        hi = [str(OPENPISTA), "run", "-e", "hi"]
        run_measured([str(OPENPISTA), "--no-daemon", *hi[1:]], cli.env)  # creates the database
        cold = [
            run_measured([str(OPENPISTA), "--no-daemon", *hi[1:]], cli.env)
            for _ in range(args.repeat)
        ]
        daemon = Daemon(cli)
        try:
            wait_ready(cli, daemon)
            attached = [run_measured(hi, cli.env) for _ in range(args.repeat)]
        finally:
            daemon.stop()
        helps = [run_measured([str(OPENPISTA), "--help"], cli.env) for _ in range(args.repeat)]
    report("attached", attached, TARGETS["attached"])
    report("cold", cold, TARGETS["cold"])
    wall = statistics.median(t for t, _ in helps)
    print(
        f"openpista --help{'':<16} median {wall * 1000:7.1f} ms (target <= "
        f"{HELP_TARGET * 1000:.0f} ms)   peak RSS {max(r for _, r in helps) / 1024:6.1f} MiB"
        f"   (n={len(helps)})   {machine()}"
    )


if __name__ == "__main__":
    main()
