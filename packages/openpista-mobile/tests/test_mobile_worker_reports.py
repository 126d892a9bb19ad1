"""Worker reports over QUIC (``worker_envelope``, and the original ``worker_report``): the
same ACKs as the HTTP endpoint, stored in the same worker log before the answer, by a worker
without a device token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.memory import WorkerLog
from openpista.worker_client import ReportClient
from openpista.worker_service import WorkerReports
from openpista.workers import WorkerReport, worker_hub
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient, MobileError
from openpista_mobile.protocol import ErrorCode
from openpista_mobile.worker import quic_transport

Connect = Callable[..., Awaitable[MobileClient]]


@pytest.fixture
async def reports(tmp_path: Path) -> AsyncIterator[WorkerReports]:
    started = await WorkerReports.open(worker_hub(), f"sqlite+aiosqlite:///{tmp_path}/w.db")
    yield started
    await started.close()


def envelope(task_id: str, report_id: str, kind: str = "progress", **fields: Any) -> Any:
    return {"v": 1, "task_id": task_id, "report_id": report_id, "kind": kind, **fields}


async def test_reports_over_quic_are_acked_stored_once_and_reach_the_task(
    connect: Connect, reports: WorkerReports
) -> None:
    hub = worker_hub()
    grant = hub.open_task("session-1", "mobile:phone", ttl=60)
    try:
        worker = await connect(device=None, token=None)  # workers have no device token
        progress = envelope(grant.task_id, "p1", log=["half way"], percent=50)
        assert (await worker.send_report(grant.token, progress))["result"] == "accepted"
        assert (await worker.send_report(grant.token, progress))["result"] == "duplicate"
        wrong = await worker.send_report("wrong", envelope(grant.task_id, "p2"))
        assert wrong["result"] == "unknown_task"
        bad = await worker.send_report(grant.token, envelope(grant.task_id, "p3", kind="boom"))
        assert (bad["result"], bad["detail"].startswith("invalid report")) == ("invalid", True)
        final = envelope(grant.task_id, "f1", "finished", exit_code=0, output="42")
        assert (await worker.send_report(grant.token, final)) == {
            "v": 1,
            "result": "accepted",
            "task_id": grant.task_id,
            "report_id": "f1",
            "detail": "",
        }
        received = await hub.wait(grant.task_id, timeout=30)
        assert (received.output, received.exit_code) == ("42", 0)
    finally:
        hub.revoke(grant.task_id)
    late = await worker.send_report(grant.token, envelope(grant.task_id, "late"))
    assert late["result"] == "expired"
    task = await reports.log.task(grant.task_id, reports=True)
    assert task is not None
    assert [r.report_id for r in task.reports] == ["p1", "f1"]


async def test_an_original_worker_report_is_stored_before_its_ack_and_once(
    connect: Connect, reports: WorkerReports
) -> None:
    hub = worker_hub()
    grant = hub.open_task("session-1", "mobile:phone", ttl=60)
    try:
        worker = await connect(device=None, token=None)  # workers have no device token
        with pytest.raises(MobileError) as refused:
            await worker.report("wrong-token", WorkerReport(task_id=grant.task_id, output="x"))
        assert refused.value.code == ErrorCode.WORKER_REFUSED
        assert refused.value.message == "unknown_task: unknown task or wrong credential"
        with pytest.raises(MobileError) as hostile:
            await worker.report(grant.token, WorkerReport(task_id="../../etc", output="x"))
        assert hostile.value.message.startswith("invalid: invalid report: task_id"), hostile
        report = WorkerReport(task_id=grant.task_id, output="42 files", exit_code=0)
        await worker.report(grant.token, report)
        # Stored when acknowledged: no write is left to wait for.
        assert await reports.log.has_report(grant.task_id, "final")
        received = await hub.wait(grant.task_id, timeout=10)
        assert (received.output, received.exit_code) == ("42 files", 0)
        await worker.report(grant.token, report)  # a resend (lost ACK): `duplicate`, harmless
    finally:
        hub.revoke(grant.task_id)
    ended = hub.open_task("session-1", "mobile:phone", ttl=60)
    hub.revoke(ended.task_id)
    with pytest.raises(MobileError) as revoked:
        await worker.report(ended.token, WorkerReport(task_id=ended.task_id, output="late"))
    assert revoked.value.message == "expired: the task has ended: its credential is revoked"
    task = await reports.log.task(grant.task_id, reports=True)
    assert task is not None
    assert [(r.report_id, r.body["output"]) for r in task.reports] == [("final", "42 files")]


async def test_a_process_that_stores_no_reports_says_so(connect: Connect, tmp_path: Path) -> None:
    grant = worker_hub().open_task("session-1", ttl=60)
    try:
        worker = await connect(device=None, token=None)
        with pytest.raises(MobileError) as refused:
            await worker.send_report(grant.token, envelope(grant.task_id, "p1"))
        assert refused.value.code == ErrorCode.UNAVAILABLE
    finally:
        worker_hub().revoke(grant.task_id)


async def test_a_report_the_database_cannot_store_is_not_acked(
    connect: Connect, tmp_path: Path
) -> None:
    broken = WorkerReports(
        worker_hub(), await WorkerLog.open(f"sqlite+aiosqlite:///{tmp_path}/b.db")
    )
    broken.start()
    await broken.log.close()  # the database is gone
    grant = worker_hub().open_task("session-1", ttl=60)
    try:
        worker = await connect(device=None, token=None)
        with pytest.raises(MobileError) as refused:
            await worker.send_report(grant.token, envelope(grant.task_id, "p1"))
        assert refused.value.code == ErrorCode.UNAVAILABLE
    finally:
        worker_hub().revoke(grant.task_id)
        await broken.stop()


async def test_the_quic_transport_queues_what_is_not_stored_and_takes_nacks_as_final(
    mobile: MobileAdapter, tmp_path: Path
) -> None:
    hub = worker_hub()
    grant = hub.open_task("session-1", ttl=60)
    url = f"quic://127.0.0.1:{mobile.port}"

    def client(token: str, queue: str) -> ReportClient:
        transport = quic_transport(fingerprint=mobile.fingerprint)
        return ReportClient(
            url, grant.task_id, token, queue_dir=tmp_path / queue, attempts=1, transport=transport
        )

    worker, forger = client(grant.token, "worker"), client("wrong", "forger")
    try:
        # Nothing stores reports yet (`unavailable`): the report waits in the queue.
        assert (await asyncio.to_thread(worker.send, "started"))["result"] == "queued"
        reports = await WorkerReports.open(hub, f"sqlite+aiosqlite:///{tmp_path}/w.db")
        try:
            ack = await asyncio.to_thread(worker.send, "progress", percent=10)
            assert ack["result"] == "accepted"
            assert worker.queued() == []
            refused = await asyncio.to_thread(forger.send, "progress")
            assert refused["result"] == "unknown_task"
            assert forger.queued() == []  # a NACK is not retried
            task = await reports.log.task(grant.task_id, reports=True)
            assert task is not None
            assert [r.kind for r in task.reports] == ["started", "progress"]
        finally:
            await reports.close()
    finally:
        hub.revoke(grant.task_id)
