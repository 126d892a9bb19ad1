"""The worker report endpoint: ACK/NACK, credentials, durability, size caps, hostile input.

A real uvicorn server on 127.0.0.1 (:mod:`openpista_testing.workers`) and a real SQLite
memory database; requests by httpx.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista.memory import WorkerLog
from openpista.worker_api import REPORT_PATH
from openpista.workers import TaskGrant, WorkerHub
from openpista_testing.workers import Endpoint, start_endpoint, stop_endpoint

MAX_BYTES = 64_000


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    started = await start_endpoint(WorkerHub(), f"sqlite+aiosqlite:///{tmp_path}/memory.db")
    yield started
    await stop_endpoint(started)


def envelope(grant: TaskGrant, report_id: str, kind: str = "progress", **fields: Any) -> Any:
    return {"v": 1, "task_id": grant.task_id, "report_id": report_id, "kind": kind, **fields}


async def test_reports_are_stored_acked_and_the_final_one_reaches_the_task(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    grant = endpoint.grant()
    started = await endpoint.post(grant, envelope(grant, "r1", "started"))
    assert started.status_code == 200
    assert started.json() == {
        "v": 1,
        "result": "accepted",
        "task_id": grant.task_id,
        "report_id": "r1",
        "detail": "",
    }
    progress = envelope(grant, "r2", log=["step 1", "step 2"], percent=40)
    assert (await endpoint.post(grant, progress)).json()["result"] == "accepted"
    data = base64.b64encode(b"chart").decode()
    final = envelope(
        grant,
        "r3",
        "finished",
        exit_code=0,
        output="42",
        attachments=[{"name": "c.png", "mime_type": "image/png", "data": data}],
    )
    assert (await endpoint.post(grant, final)).json()["result"] == "accepted"
    report = await endpoint.hub.wait(grant.task_id, timeout=10)
    assert (report.status, report.exit_code, report.output) == ("ok", 0, "42")
    assert report.attachments[0].data == data

    # Durable: another connection to the database (a restarted daemon) sees all of it.
    async with _log(endpoint.db_url) as other:
        task = await other.task(grant.task_id, reports=True)
    assert task is not None
    assert (task.status, task.exit_code, task.percent) == ("finished", 0, 40)
    assert [r.report_id for r in task.reports] == ["r1", "r2", "r3"]
    assert task.reports[1].body["log"] == ["step 1", "step 2"]
    assert grant.token not in json.dumps([r.body for r in task.reports])


async def test_the_same_report_is_stored_once_even_after_the_task_ended(
    endpoint: Endpoint,
) -> None:
    grant = endpoint.grant()
    body = envelope(grant, "once", log=["hello"])
    assert (await endpoint.post(grant, body)).json()["result"] == "accepted"
    again = await endpoint.post(grant, body)
    assert (again.status_code, again.json()["result"]) == (200, "duplicate")
    endpoint.hub.revoke(grant.task_id)
    late = await endpoint.post(grant, body)  # the ACK was lost, the worker retries
    assert late.json()["result"] == "duplicate"
    await endpoint.reports.flush()
    task = await endpoint.reports.log.task(grant.task_id, reports=True)
    assert task is not None
    assert [r.report_id for r in task.reports] == ["once"]
    assert task.status == "ended"


async def test_missing_wrong_unknown_and_foreign_credentials_are_unknown_task(
    endpoint: Endpoint,
) -> None:
    grant, other = endpoint.grant(), endpoint.grant()
    body = envelope(grant, "r1")
    missing = await endpoint.post(None, body)
    assert (missing.status_code, missing.json()["result"]) == (401, "unknown_task")
    for token in ("wrong", other.token, grant.token + "x", "é" * 50):
        refused = await endpoint.post(grant, body, token=token)
        assert (refused.status_code, refused.json()["result"]) == (403, "unknown_task"), token
    unknown = await endpoint.post(grant, {**body, "task_id": "0123456789abcdef"})
    assert (unknown.status_code, unknown.json()["result"]) == (403, "unknown_task")
    assert await endpoint.reports.log.has_report(grant.task_id, "r1") is False


async def test_revoked_and_expired_credentials_are_expired(endpoint: Endpoint) -> None:
    revoked = endpoint.grant()
    endpoint.hub.revoke(revoked.task_id)
    answer = await endpoint.post(revoked, envelope(revoked, "r1"))
    assert (answer.status_code, answer.json()["result"]) == (410, "expired")
    assert "revoked" in answer.json()["detail"]
    expired = endpoint.grant(ttl=-1)
    answer = await endpoint.post(expired, envelope(expired, "r1"))
    assert (answer.status_code, answer.json()["result"]) == (410, "expired")
    assert "expired" in answer.json()["detail"]


async def test_a_revoked_task_stays_refused_after_a_daemon_restart(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/memory.db"
    first = await start_endpoint(WorkerHub(), db_url)
    ended, running = first.grant(), first.grant()
    first.hub.revoke(ended.task_id)
    await stop_endpoint(first)  # stores the queued task events first

    second = await start_endpoint(WorkerHub(), db_url)  # a new process: no open tasks
    try:
        answer = await second.post(ended, envelope(ended, "late"))
        assert answer.json()["result"] == "expired"
        # The running task's worker outlived the daemon: its report is still accepted.
        answer = await second.post(running, envelope(running, "p1", percent=10))
        assert answer.json()["result"] == "accepted"
        final = envelope(running, "f1", "failed", exit_code=3)
        assert (await second.post(running, final)).json()["result"] == "accepted"
        wrong = await second.post(running, envelope(running, "p2"), token="wrong")
        assert wrong.json()["result"] == "unknown_task"
        # Files of the output directory are not known any more: inline bytes only.
        refused = await second.post(
            running,
            envelope(running, "f2", "finished", attachments=[{"name": "a", "path": "a"}]),
        )
        assert refused.json()["result"] == "invalid"
        task = await second.reports.log.task(running.task_id)
        assert task is not None
        assert (task.status, task.exit_code) == ("failed", 3)
    finally:
        await stop_endpoint(second)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "invalid report"),
        (b"[" * 5000 + b"]" * 5000, "not JSON"),
        (b'{"v": 2, "task_id": "T", "report_id": "r", "kind": "progress"}', "v"),
        (b'{"v": 1, "task_id": "T", "report_id": "r", "kind": "exploded"}', "kind"),
        (b'{"v": 1, "task_id": "T", "report_id": "r", "kind": "progress", "x": 1}', "x"),
        (b'{"v": 1, "task_id": "T", "report_id": "../etc", "kind": "progress"}', "report_id"),
        (b'{"v": 1, "task_id": "T", "report_id": "r", "kind": "progress", "percent": 101}', "per"),
    ],
)
async def test_malformed_reports_are_invalid(endpoint: Endpoint, body: bytes, problem: str) -> None:
    grant = endpoint.grant()
    body = body.replace(b'"T"', f'"{grant.task_id}"'.encode())
    answer = await endpoint.post(grant, body, raw=True)
    assert (answer.status_code, answer.json()["result"]) == (400, "invalid")
    assert problem in answer.json()["detail"]


async def test_refused_attachments_and_a_second_final_report_are_invalid(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.txt").write_text("the result")
    (tmp_path / "secret").write_text("host secret")
    (out / "link").symlink_to(tmp_path / "secret")
    grant = endpoint.grant(output_dir=out, max_file_bytes=1000)
    hostile = [
        {"name": "x", "url": "http://127.0.0.1:1/x"},
        {"name": "x", "path": "/etc/passwd"},
        {"name": "x", "path": "../secret"},
        {"name": "x", "path": "link"},
        {"name": "x", "data": "not base64!"},
        {"name": "x", "data": base64.b64encode(b"x" * 2000).decode()},
        {"name": "a/b", "data": ""},
    ]
    for number, item in enumerate(hostile):
        body = envelope(grant, f"h{number}", "finished", attachments=[item])
        answer = await endpoint.post(grant, body)
        assert answer.json()["result"] == "invalid", item
    progress_with_file = envelope(grant, "p", attachments=[{"name": "r", "path": "result.txt"}])
    assert (await endpoint.post(grant, progress_with_file)).json()["result"] == "invalid"
    final = envelope(grant, "f1", "finished", attachments=[{"name": "r", "path": "result.txt"}])
    assert (await endpoint.post(grant, final)).json()["result"] == "accepted"
    report = await endpoint.hub.wait(grant.task_id, timeout=10)
    assert base64.b64decode(report.attachments[0].data or "") == b"the result"
    second = await endpoint.post(grant, envelope(grant, "f2", "failed"))
    assert second.json()["result"] == "invalid"
    assert "final report" in second.json()["detail"]


async def test_oversized_reports_are_too_large_whether_declared_or_streamed(
    endpoint: Endpoint,
) -> None:
    grant = endpoint.grant()
    big = envelope(grant, "big", output="x" * (MAX_BYTES + 10))
    declared = await endpoint.post(grant, big)
    assert (declared.status_code, declared.json()["result"]) == (413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(MAX_BYTES // 1000 + 5):
            yield b" " * 1000

    async with httpx.AsyncClient() as client:
        streamed = await client.post(
            endpoint.url + REPORT_PATH,
            content=chunks(),
            headers={"Authorization": f"Bearer {grant.token}"},
        )
    assert (streamed.status_code, streamed.json()["result"]) == (413, "too_large")
    # The endpoint still serves.
    assert (await endpoint.post(grant, envelope(grant, "ok"))).json()["result"] == "accepted"


async def test_a_report_the_database_cannot_store_is_a_503_and_not_acked(
    endpoint: Endpoint,
) -> None:
    grant = endpoint.grant()
    await endpoint.reports.log.close()  # the database is gone
    answer = await endpoint.post(grant, envelope(grant, "r1"))
    assert answer.status_code == 503
    assert "result" not in answer.json()


async def test_other_endpoints_reports_are_stored_too(endpoint: Endpoint) -> None:
    from openpista.workers import WorkerReport

    grant = endpoint.grant()
    endpoint.hub.submit(grant.token, WorkerReport(task_id=grant.task_id, output="via socket"))
    endpoint.hub.revoke(grant.task_id)
    await endpoint.reports.flush()
    task = await endpoint.reports.log.task(grant.task_id, reports=True)
    assert task is not None
    assert task.status == "finished"
    assert task.reports[0].body["output"] == "via socket"


class _log:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> WorkerLog:
        self.opened = await WorkerLog.open(self.url)
        return self.opened

    async def __aexit__(self, *_: object) -> None:
        await self.opened.close()
