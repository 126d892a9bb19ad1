"""openpista-docker benchmark: one ``container.run`` task, create to result, vs subprocess mode.

Run with ``nox --no-venv -s bench`` (or ``.venv/bin/python benchmarks/bench_docker.py``). Starts a
private ``dockerd`` (host-safe flags, busybox image made with ``docker import``, the same code
as the tests: :mod:`openpista_docker.testing`) and stops it at the end. Figures are printed,
never asserted: the median and max of each measurement.

- docker round trip: create the container (limits, labels, mounts, credential), start, wait,
  collect the logs and ``/out`` files, remove it, revoke the credential.
- subprocess mode: the same task through the fallback (no engine reachable), run on the host.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from openpista_docker.sandbox import DockerSandbox, TaskSpec
from openpista_docker.settings import DockerSettings
from openpista_docker.testing import docker_engine_with_base_image

COMMAND = "echo hello; echo 42 > $OPENPISTA_OUT/answer.txt"


async def measure(sandbox: DockerSandbox, rounds: int) -> list[float]:
    """Seconds of each of ``rounds`` tasks (after one warm-up task)."""
    spec = TaskSpec(argv=["/bin/sh", "-c", COMMAND], limits=sandbox.settings.limits())
    await sandbox.run(spec, "bench")
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = await sandbox.run(spec, "bench")
        times.append(time.perf_counter() - started)
        if result.process.exit_code != 0 or not result.files:
            raise SystemExit(f"the task failed in {result.mode} mode: {result.process}")
    return times


def show(label: str, times: list[float]) -> None:
    print(
        f"{label:<40} median {statistics.median(times) * 1000:8.1f} ms"
        f"   max {max(times) * 1000:8.1f} ms   ({len(times)} runs)"
    )


async def main(rounds: int) -> None:
    with (
        tempfile.TemporaryDirectory() as workspace,
        docker_engine_with_base_image() as (engine, image),
    ):
        await asyncio.to_thread(Path(workspace).chmod, 0o755)
        docker_mode = DockerSandbox(
            DockerSettings(docker_host=engine.host, image=image, pull=False), Path(workspace)
        )
        subprocess_mode = DockerSandbox(
            DockerSettings(docker_host=f"unix://{workspace}/no-engine.sock", fallback="subprocess"),
            Path(workspace),
        )
        try:
            show("container.run, docker (create..remove)", await measure(docker_mode, rounds))
            show("container.run, subprocess fallback", await measure(subprocess_mode, rounds))
        finally:
            await docker_mode.close()
            await subprocess_mode.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="tasks per mode (default 20)")
    asyncio.run(main(parser.parse_known_args()[0].rounds))
