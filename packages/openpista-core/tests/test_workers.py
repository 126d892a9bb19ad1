"""Worker reports: accepted with the task's secret, refused otherwise, revoked at the end."""

from __future__ import annotations

import asyncio

import pytest

from openpista.workers import WorkerAuthError, WorkerHub, WorkerReport, worker_hub


async def test_a_report_with_the_right_secret_reaches_the_waiting_task() -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1", "cli:local")
    waiting = asyncio.create_task(hub.wait(grant.task_id, timeout=5))
    accepted = hub.submit(grant.token, WorkerReport(task_id=grant.task_id, output="done"))
    assert accepted.session_id == "s1"
    assert (await waiting).output == "done"


async def test_wrong_unknown_expired_and_revoked_credentials_are_refused() -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1")
    with pytest.raises(WorkerAuthError):
        hub.submit("not-the-secret", WorkerReport(task_id=grant.task_id))
    with pytest.raises(WorkerAuthError):
        hub.submit(grant.token, WorkerReport(task_id="no-such-task"))
    expired = hub.open_task("s1", ttl=-1)
    with pytest.raises(WorkerAuthError, match="expired"):
        hub.submit(expired.token, WorkerReport(task_id=expired.task_id))
    hub.revoke(grant.task_id)
    hub.revoke(grant.task_id)  # idempotent
    with pytest.raises(WorkerAuthError):
        hub.submit(grant.token, WorkerReport(task_id=grant.task_id))
    assert [g.task_id for g in hub.open_tasks()] == [expired.task_id]


async def test_a_task_reports_once_and_waiting_times_out() -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1")
    with pytest.raises(TimeoutError):
        await hub.wait(grant.task_id, timeout=0.01)
    hub.submit(grant.token, WorkerReport(task_id=grant.task_id))
    with pytest.raises(WorkerAuthError, match="already"):
        hub.submit(grant.token, WorkerReport(task_id=grant.task_id, output="again"))
    with pytest.raises(KeyError):
        await hub.wait("missing")


def test_the_process_has_one_hub() -> None:
    assert worker_hub() is worker_hub()
