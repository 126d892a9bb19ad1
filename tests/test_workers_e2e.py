"""End to end: a real ``openpista start`` serves ``[workers]``; a real worker's task shows up
in the history, the feed and ``openpista workers``, and is on disk once the daemon stops."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port

pytestmark = pytest.mark.e2e

TOKEN = "workers-api-token"
# The docker plugin's host fallback (no engine here): its worker reports through the
# plugin's socket, as a container would; core stores and publishes that report too.
WORKER = 'python3 "$(dirname "$OPENPISTA_REPORT_SOCKET")/report" --exit-code 0 "the answer is 42"'


def worker_config(cli: Cli) -> None:
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "docker"
    cli.write_config(
        cli.config.read_text()
        + f'\n[workers]\nenabled = true\nport = 0\napi_token = "{TOKEN}"\n'
        + f'\n[tools.docker]\ndocker_host = "unix://{cli.home}/none.sock"\n'
        + 'fallback = "subprocess"\n'
    )


def endpoint_url(daemon: Daemon) -> str:
    line = daemon.wait_for("worker endpoint listens on http://127.0.0.1:")
    found = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert found is not None, line
    return found.group(0)


def history(url: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/workers", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    tasks: list[dict[str, Any]] = answer.json()["tasks"]
    return tasks


def finished(url: str) -> list[dict[str, Any]]:
    """The history once its one task is finished (stored as the report arrived, by a
    writer that may lag behind the answer on a busy machine)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        tasks = history(url)
        if [t["status"] for t in tasks] == ["finished"]:
            return tasks
        time.sleep(0.1)
    raise AssertionError(f"no finished task: {history(url)}")


def test_a_workers_task_is_stored_listed_and_kept_when_the_daemon_stops(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    worker_config(cli)
    llm_emulator.reply_tool_calls([("container_run", {"command": WORKER})])
    llm_emulator.reply_text("the worker is done")
    daemon = daemons(cli)
    url = endpoint_url(daemon)
    status = cli("status")
    assert f"  worker endpoint: {url}" in status.stdout.splitlines(), status.stdout

    daemon.send("run the worker")
    daemon.wait_for("the worker is done")
    (task,) = finished(url)
    assert (task["status"], task["exit_code"]) == ("finished", 0)
    assert task["channel_id"].startswith("cli:")
    detail = httpx.get(
        f"{url}/api/workers/{task['task_id']}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()["task"]
    assert detail["reports"][-1]["output"] == "the answer is 42"

    # The task ended: its credential is refused; without one nothing gets in.
    late = {"v": 1, "task_id": task["task_id"], "report_id": "late", "kind": "progress"}
    refused = httpx.post(f"{url}/api/worker-report", json=late)
    assert (refused.status_code, refused.json()["result"]) == (401, "unknown_task")
    assert httpx.get(f"{url}/api/workers").status_code == 401

    assert daemon.stop() == 0
    # On disk: a new process (as a restarted daemon would) reads the same history.
    listed = cli("workers", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(t["task_id"], t["status"]) for t in json.loads(listed.stdout)] == [
        (task["task_id"], "finished")
    ]


def test_a_report_acknowledged_on_the_docker_socket_survives_kill_9(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    worker_config(cli)
    ack, release = cli.home / "ack.json", cli.home / "release"
    # The worker reports, keeps the ACK, then waits (bounded) to be let go: the daemon is
    # killed while its task is still running, right after acknowledging the report.
    command = (
        f'python3 "$(dirname "$OPENPISTA_REPORT_SOCKET")/report" --exit-code 0 kept > {ack}.part'
        f" && mv {ack}.part {ack}; i=0; while [ ! -e {release} ] && [ $i -lt 600 ]; do"
        " sleep 0.1; i=$((i+1)); done"
    )
    llm_emulator.reply_tool_calls([("container_run", {"command": command})])
    llm_emulator.reply_text("never seen")
    daemon = daemons(cli)
    endpoint_url(daemon)
    try:
        daemon.send("run the worker")
        end = time.monotonic() + 60
        while not ack.exists() and time.monotonic() < end and daemon.process.poll() is None:
            time.sleep(0.05)
        assert ack.exists(), daemon.output()
        answer = json.loads(ack.read_text())
        assert (answer["result"], answer["report_id"]) == ("accepted", "final")
        daemon.kill()  # SIGKILL: no shutdown, no queued write gets a chance
    finally:
        release.touch()
    shown = cli("workers", "show", answer["task_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    task = json.loads(shown.stdout)
    assert (task["status"], task["exit_code"]) == ("finished", 0)
    assert [(r["report_id"], r["output"]) for r in task["reports"]] == [("final", "kept")]


QUIC_WORKER = """import json, os, pathlib, sys, time
from openpista.worker_client import ReportClient
from openpista_mobile.worker import quic_transport

# Outlive the daemon's process group, as a worker on another host would: the parent waits
# (the task runs on), the worker itself gets a session of its own.
if os.fork():
    sys.exit(os.waitstatus_to_exitcode(os.wait()[1]))
os.setsid()
here, url, pin = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
client = ReportClient(
    url, os.environ["OPENPISTA_TASK_ID"], os.environ["OPENPISTA_TASK_TOKEN"],
    queue_dir=here / "queue", attempts=2, base_delay=0.05,
    transport=quic_transport(fingerprint=pin, timeout=5),
)

def step(name, kind, **fields):
    (here / "part").write_text(json.dumps(client.send(kind, **fields)))
    (here / "part").rename(here / name)

def wait(name):
    end = time.monotonic() + 120
    while not (here / name).exists():
        if time.monotonic() > end:
            sys.exit(9)
        time.sleep(0.05)

step("started", "started")
wait("offline")
step("progress", "progress", log=["while the daemon is away"], percent=50)
wait("online")
step("finished", "finished", exit_code=0, output="all there")
"""


def wait_for_file(path: Path, daemon: Daemon | None = None) -> dict[str, Any]:
    end = time.monotonic() + 60
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert path.exists(), daemon.output() if daemon else f"{path} never appeared"
    found: dict[str, Any] = json.loads(path.read_text())
    return found


def test_a_quic_worker_queues_while_the_daemon_is_down_and_replays_once_in_order(
    cli: Cli, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    port = free_port(udp=True)
    worker_config(cli)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "docker,mobile"
    cli.write_config(
        cli.config.read_text()
        + f'\n[channels.mobile]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
        + 'tokens = { laptop = "laptop-token-0123456789abcdef" }\n'
    )
    work = cli.home / "quic-worker"
    work.mkdir()
    (work / "worker.py").write_text(QUIC_WORKER)
    url = f"quic://127.0.0.1:{port}"

    first = daemons(cli)
    pin = first.wait_for("certificate SHA-256").rsplit(" ", 1)[1].strip()
    first.wait_for("openpista serves:")
    command = f"{sys.executable} {work / 'worker.py'} {work} {url} {pin}"
    llm_emulator.reply_tool_calls([("container_run", {"command": command})])
    llm_emulator.reply_text("never seen")
    first.send("run the worker")
    started = wait_for_file(work / "started", first)
    assert started["result"] == "accepted", started
    first.kill()  # the daemon is gone in the middle of the task

    (work / "offline").touch()
    assert wait_for_file(work / "progress")["result"] == "queued"
    second = daemons(cli)
    second.wait_for("openpista serves:")
    (work / "online").touch()  # the next report replays the queued one first
    assert wait_for_file(work / "finished", second)["result"] == "accepted"

    shown = cli("workers", "show", started["task_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    task = json.loads(shown.stdout)
    assert (task["status"], task["exit_code"]) == ("finished", 0)
    assert [r["kind"] for r in task["reports"]] == ["started", "progress", "finished"]
    assert task["logs"] == ["while the daemon is away"]
    assert not list((work / "queue").rglob("*.json"))
