"""The worker tables on SQLite and PostgreSQL: revision 0004 matches the models, reports are
stored once, tasks are listed by status and time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from openpista.memory import MemoryStoreError, WorkerLog
from openpista.memory.tables import VERSION_TABLE, Base
from openpista.memory.worker_reports import WorkerReportRow, WorkerTaskRow, token_digest

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
async def worker_log(database_url: str) -> AsyncIterator[WorkerLog]:
    opened = await WorkerLog.open(database_url)
    yield opened
    await opened.close()


def columns(task_id: str, created: datetime = NOW) -> dict[str, object]:
    return {
        "task_id": task_id,
        "session_id": "s1",
        "channel_id": "telegram:42",
        "token_sha256": token_digest("secret"),
        "created_at": created,
        "expires_at": created + timedelta(minutes=10),
    }


def report(task_id: str, report_id: str, kind: str, **fields: object) -> dict[str, object]:
    return {"v": 1, "task_id": task_id, "report_id": report_id, "kind": kind, **fields}


async def test_revision_0004_creates_exactly_the_worker_models(worker_log: WorkerLog) -> None:
    tables = {WorkerTaskRow.__tablename__, WorkerReportRow.__tablename__}

    def differences(conn: Connection) -> list[object]:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        found = compare_metadata(context, Base.metadata)
        return [d for d in found if tables & set(_tables_named(d))]

    assert await worker_log._db.run(differences, "comparing", write=False) == []


def _tables_named(difference: object) -> list[str]:
    names = []
    for item in difference if isinstance(difference, list) else [difference]:
        for part in item if isinstance(item, tuple) else (item,):
            name = getattr(part, "name", None)
            table = getattr(part, "table", None)
            names += [n for n in (name, getattr(table, "name", None)) if isinstance(n, str)]
    return names


async def test_reports_are_stored_once_in_order_with_the_task_status(
    worker_log: WorkerLog,
) -> None:
    await worker_log.record_task("t1", "s1", "telegram:42", "secret", NOW, NOW + timedelta(1))
    assert await worker_log.store_report(columns("t1"), report("t1", "a", "started"), NOW)
    progress = report("t1", "b", "progress", log=["é\x00 line"], percent=12.5, dropped=2)
    assert await worker_log.store_report(columns("t1"), progress, NOW)
    assert not await worker_log.store_report(columns("t1"), progress, NOW)  # duplicate
    running = await worker_log.task("t1")
    assert running is not None
    assert (running.status, running.percent, running.dropped) == ("running", 12.5, 2)
    final = report("t1", "c", "failed", exit_code=7)
    assert await worker_log.store_report(columns("t1"), final, NOW + timedelta(seconds=3))
    await worker_log.end_task("t1", NOW + timedelta(seconds=4))
    task = await worker_log.task("t1", reports=True)
    assert task is not None
    assert (task.status, task.exit_code, task.duration) == ("failed", 7, 3.0)
    assert task.revoked_at == NOW + timedelta(seconds=4)
    assert [r.report_id for r in task.reports] == ["a", "b", "c"]
    assert task.reports[1].body["log"] == ["é\x00 line"]
    assert task.token_sha256 == token_digest("secret")


async def test_concurrent_copies_of_a_report_are_stored_once(worker_log: WorkerLog) -> None:
    body = report("t1", "same", "progress")
    stored = await asyncio.gather(
        *(worker_log.store_report(columns("t1"), body, NOW) for _ in range(8))
    )
    assert stored.count(True) == 1
    task = await worker_log.task("t1", reports=True)
    assert task is not None
    assert len(task.reports) == 1


async def test_tasks_are_listed_newest_first_by_status_and_since(worker_log: WorkerLog) -> None:
    for number in range(3):
        created = NOW + timedelta(minutes=number)
        await worker_log.record_task(f"t{number}", "s1", "", "x", created, created)
    await worker_log.end_task("t1", NOW)
    assert [t.task_id for t in await worker_log.tasks()] == ["t2", "t1", "t0"]
    assert [t.task_id for t in await worker_log.tasks("ended")] == ["t1"]
    since = NOW + timedelta(minutes=1)
    assert [t.task_id for t in await worker_log.tasks(since=since)] == ["t2", "t1"]
    assert [t.task_id for t in await worker_log.tasks(limit=1)] == ["t2"]
    assert await worker_log.task("nope") is None
    with pytest.raises(MemoryStoreError, match="unknown task status"):
        await worker_log.tasks("exploded")
