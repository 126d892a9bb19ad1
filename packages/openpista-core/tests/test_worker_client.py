"""The worker-side client: real subprocess workers against a real endpoint that goes away.

The endpoint is stopped while a worker reports and started again on the same port; the
queued reports arrive once each, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openpista.worker_client import ReportClient
from openpista.workers import TaskGrant, WorkerHub
from openpista_testing.ports import free_port
from openpista_testing.workers import Endpoint, start_endpoint, stop_endpoint


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/memory.db"


@pytest.fixture
async def endpoint(db_url: str) -> AsyncIterator[Endpoint]:
    started = await start_endpoint(WorkerHub(), db_url)
    yield started
    if started.server.socket is not None:
        await stop_endpoint(started)


def worker_env(grant: TaskGrant, url: str, queue: Path) -> dict[str, str]:
    return {
        **os.environ,
        **grant.environment(url),
        "OPENPISTA_REPORT_QUEUE": str(queue),
    }


async def run_worker(
    env: dict[str, str], *args: str, retried: asyncio.Event | None = None
) -> tuple[int, dict[str, object], str]:
    """``python -m openpista.worker_client ARGS``: exit status, printed ACK, stderr. Sets
    ``retried`` when the worker says it retries."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "openpista.worker_client",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    errors = []
    while line := (await asyncio.wait_for(process.stderr.readline(), 60)).decode():
        errors.append(line)
        if retried is not None and "retrying" in line:
            retried.set()
    out = await asyncio.wait_for(process.stdout.read(), 60)
    code = await asyncio.wait_for(process.wait(), 60)
    printed = json.loads(out) if out.strip() else {}
    return code, printed, "".join(errors)


async def restarted(old: Endpoint) -> Endpoint:
    """The endpoint of ``old``'s hub and database, started again on the same port."""
    return await start_endpoint(old.hub, old.db_url, port=old.port)


async def test_reports_queued_while_the_endpoint_is_down_arrive_once_in_order(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    grant = endpoint.grant()
    env = worker_env(grant, endpoint.report_url, tmp_path / "queue")
    code, ack, _ = await run_worker(env, "started")
    assert (code, ack["result"]) == (0, "accepted")

    await stop_endpoint(endpoint)  # the network is cut
    fast = ["--attempts", "2", "--base-delay", "0.01"]
    code, ack, errors = await run_worker(env, "progress", "--log", "half way", *fast)
    assert (code, ack["result"]) == (3, "queued"), errors
    assert "retrying" in errors
    assert len(list((tmp_path / "queue" / grant.task_id).glob("*.json"))) == 1

    back = await restarted(endpoint)
    try:
        code, ack, errors = await run_worker(env, "finished", "--exit-code", "0", "--output", "42")
        assert (code, ack["result"]) == (0, "accepted"), errors
        assert list((tmp_path / "queue" / grant.task_id).glob("*.json")) == []
        report = await back.hub.wait(grant.task_id, timeout=30)
        assert report.output == "42"
        task = await back.reports.log.task(grant.task_id, reports=True)
        assert task is not None
        assert [r.kind for r in task.reports] == ["started", "progress", "finished"]
        assert task.reports[1].body["log"] == ["half way"]
        # Replaying again sends nothing twice.
        queue = tmp_path / "queue"
        client = ReportClient(back.report_url, grant.task_id, grant.token, queue_dir=queue)
        assert await asyncio.to_thread(client.flush) is True
        again = await back.reports.log.task(grant.task_id, reports=True)
        assert again is not None
        assert len(again.reports) == 3
    finally:
        await stop_endpoint(back)


async def test_a_worker_retrying_while_the_daemon_restarts_is_stored_once(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    grant = endpoint.grant()
    env = worker_env(grant, endpoint.report_url, tmp_path / "queue")
    await stop_endpoint(endpoint)
    patient = ["--attempts", "1000", "--base-delay", "0.05", "--max-delay", "0.5"]
    retried = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(env, "progress", "--percent", "70", *patient, retried=retried)
    )
    await asyncio.wait_for(retried.wait(), 60)  # it failed at least once: the cut is real
    back = await restarted(endpoint)
    try:
        code, ack, errors = await worker
        assert (code, ack["result"]) == (0, "accepted"), errors
        task = await back.reports.log.task(grant.task_id, reports=True)
        assert task is not None
        assert ([r.kind for r in task.reports], task.percent) == (["progress"], 70)
    finally:
        await stop_endpoint(back)


async def test_a_nack_is_final_and_nothing_is_queued(endpoint: Endpoint, tmp_path: Path) -> None:
    grant = endpoint.grant()
    env = worker_env(grant, endpoint.report_url, tmp_path / "queue")
    code, ack, _ = await run_worker({**env, "OPENPISTA_TASK_TOKEN": "wrong"}, "started")
    assert (code, ack["result"]) == (2, "unknown_task")
    endpoint.hub.revoke(grant.task_id)
    code, ack, _ = await run_worker(env, "progress")
    assert (code, ack["result"]) == (2, "expired")
    assert list((tmp_path / "queue").glob("**/*.json")) == []


async def test_a_process_that_is_no_worker_gets_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPISTA_")}
    code, ack, errors = await run_worker(env, "started")
    assert (code, ack) == (2, {})
    assert errors.startswith("❌ OPENPISTA_REPORT_URL is not set")
    assert "Traceback" not in errors
    hostile = {**env, "OPENPISTA_REPORT_URL": "http://127.0.0.1:1/", "OPENPISTA_TASK_TOKEN": "t"}
    code, _, errors = await run_worker({**hostile, "OPENPISTA_TASK_ID": "../../etc"}, "started")
    assert (code, errors) == (2, "❌ '../../etc' is not a task id\n")
    local = {**hostile, "OPENPISTA_TASK_ID": "task-1", "OPENPISTA_REPORT_URL": "file:///etc/passwd"}
    code, _, errors = await run_worker(local, "started")  # urlopen would read the file
    assert (code, errors) == (2, "❌ the report URL must be http(s), not 'file'\n")


async def test_the_offline_queue_is_bounded_and_reports_what_it_dropped(
    db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    hub = WorkerHub()
    grant = hub.open_task("session-1")
    client = ReportClient(
        f"http://127.0.0.1:{port}/api/worker-report",
        grant.task_id,
        grant.token,
        queue_dir=tmp_path / "queue",
        max_queued=2,
        attempts=1,
    )
    for number in range(3):
        assert (await asyncio.to_thread(client.send, "progress", log=[f"{number}"]))[
            "result"
        ] == "queued"
    assert client.dropped == 1
    assert [r["log"] for r in client.queued()] == [["1"], ["2"]]

    back = await start_endpoint(hub, db_url, port=port)
    try:
        ack = await asyncio.to_thread(client.send, "finished", exit_code=0)
        assert ack["result"] == "accepted"
        task = await back.reports.log.task(grant.task_id, reports=True)
        assert task is not None
        assert [r.body["log"] for r in task.reports] == [["1"], ["2"], []]
        assert task.dropped == 1
        assert all(r.body["dropped"] == 1 for r in task.reports)
    finally:
        await stop_endpoint(back)


async def test_each_task_replays_only_its_own_queue(endpoint: Endpoint, tmp_path: Path) -> None:
    first, second = endpoint.grant(), endpoint.grant()
    offline = f"http://127.0.0.1:{free_port()}/api/worker-report"
    queued = {}
    for grant in (first, second):
        client = ReportClient(
            offline, grant.task_id, grant.token, queue_dir=tmp_path / "queue", attempts=1
        )
        ack = await asyncio.to_thread(client.send, "started")
        assert ack["result"] == "queued"
        queued[grant.task_id] = ack["report_id"]
    online = ReportClient(
        endpoint.report_url, first.task_id, first.token, queue_dir=tmp_path / "queue"
    )
    assert await asyncio.to_thread(online.flush) is True
    assert await endpoint.reports.log.has_report(first.task_id, queued[first.task_id])
    # The other task's report waits for its own credential, untouched.
    assert len(list((tmp_path / "queue" / second.task_id).glob("*.json"))) == 1
    assert not await endpoint.reports.log.has_report(second.task_id, queued[second.task_id])
    with pytest.raises(ValueError, match="not a task id"):
        ReportClient(endpoint.report_url, "../escape", "t", queue_dir=tmp_path / "queue")


def test_backoff_grows_exponentially_with_full_jitter_and_a_ceiling(tmp_path: Path) -> None:
    delays: list[float] = []
    client = ReportClient(
        f"http://127.0.0.1:{free_port()}/api/worker-report",
        "t",
        "secret",
        queue_dir=tmp_path / "queue",
        attempts=8,
        base_delay=0.001,
        max_delay=0.01,
        sleep=delays.append,
    )
    assert client.send("started")["result"] == "queued"
    assert len(delays) == 7
    ceilings = [min(0.01, 0.001 * 2**n) for n in range(7)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) > 1  # jittered, not a fixed schedule
