"""Worker tasks and their reports, durable: the daemon stores a report before it ACKs it.

``worker_tasks`` holds one row per task (who started it, a SHA-256 of its credential so a
report arriving after a daemon restart can still be checked, its expiry, revocation and
status); ``worker_reports`` every report accepted for it, unique by ``(task_id,
report_id)``. :class:`WorkerLog` reads and writes both (revision ``0004``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

from sqlalchemy import (
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from openpista.memory.checks import MemoryStoreError
from openpista.memory.engine import Database
from openpista.memory.schema import migrate
from openpista.memory.tables import (
    CHANNEL_ID_MAX_LENGTH,
    SESSION_ID_MAX_LENGTH,
    Base,
    Mapped,
    MessageId,
    StoredJSON,
    UTCDateTime,
    mapped_column,
)

TaskStatus = Literal["created", "running", "finished", "failed", "ended"]
TASK_STATUSES = ("created", "running", "finished", "failed", "ended")
"""``created`` (no report yet), ``running`` (started or progress), ``finished`` and
``failed`` (its final report), ``ended`` (revoked without a final report)."""


class WorkerTaskRow(Base):
    """A worker task: who started it and where it stands."""

    __tablename__ = "worker_tasks"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(SESSION_ID_MAX_LENGTH), nullable=False)
    channel_id: Mapped[str] = mapped_column(String(CHANNEL_ID_MAX_LENGTH), nullable=False)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer(), nullable=True)
    percent: Mapped[float | None] = mapped_column(Float(), nullable=True)
    dropped: Mapped[int] = mapped_column(Integer(), nullable=False, default=0)

    __table_args__ = (
        Index("ix_worker_tasks_created_at", "created_at"),
        Index("ix_worker_tasks_status", "status"),
    )


class WorkerReportRow(Base):
    """One accepted report of a task; ``id`` gives the arrival order."""

    __tablename__ = "worker_reports"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("worker_tasks.task_id", ondelete="CASCADE"), nullable=False
    )
    report_id: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(StoredJSON, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (UniqueConstraint("task_id", "report_id"),)


def token_digest(token: str) -> str:
    """The stored form of a task credential (hex SHA-256; the secret itself is never kept)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredReport:
    """An accepted report as stored (its envelope JSON in ``body``)."""

    report_id: str
    kind: str
    body: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerTask:
    """A stored task; timestamps are UTC. ``reports`` is filled by :meth:`WorkerLog.task`."""

    task_id: str
    session_id: str
    channel_id: str
    token_sha256: str
    status: TaskStatus
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    percent: float | None
    dropped: int
    reports: list[StoredReport] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        """Seconds from creation to the final report (``None`` while it runs)."""
        end = self.finished_at or self.revoked_at
        return None if end is None else (end - self.created_at).total_seconds()

    def public(self) -> dict[str, Any]:
        """The task as the history API shows it (no credential digest)."""
        return {
            "task_id": self.task_id,
            "session_id": self.session_id,
            "channel_id": self.channel_id,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration": self.duration,
            "exit_code": self.exit_code,
            "percent": self.percent,
            "dropped": self.dropped,
        }


class WorkerLog:
    """The ``worker_tasks`` and ``worker_reports`` tables of a memory database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect to ``url`` and upgrade its schema to the newest revision."""
        database = Database(url)
        try:
            await migrate(database, "head")
        except BaseException:
            await database.close()
            raise
        return cls(database)

    async def close(self) -> None:
        """Close every connection (idempotent)."""
        await self._db.close()

    async def record_task(
        self,
        task_id: str,
        session_id: str,
        channel_id: str,
        token: str,
        created_at: datetime,
        expires_at: datetime,
    ) -> None:
        """Store a new task (a task already stored is left as it is)."""
        row = {
            "task_id": task_id,
            "session_id": session_id[:SESSION_ID_MAX_LENGTH],
            "channel_id": channel_id[:CHANNEL_ID_MAX_LENGTH],
            "token_sha256": token_digest(token),
            "status": "created",
            "created_at": created_at,
            "expires_at": expires_at,
            "dropped": 0,
        }

        def work(conn: Connection) -> None:
            _ensure_task(conn, row)

        await self._db.run(work, f"recording worker task {task_id}", write=True)

    async def end_task(self, task_id: str, at: datetime) -> None:
        """Mark the task's credential revoked; a task without a final report becomes
        ``ended``."""

        def work(conn: Connection) -> None:
            row = WorkerTaskRow
            conn.execute(
                update(row)
                .where(row.task_id == task_id, row.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            conn.execute(
                update(row)
                .where(row.task_id == task_id, row.status.in_(("created", "running")))
                .values(status="ended")
            )

        await self._db.run(work, f"ending worker task {task_id}", write=True)

    async def store_report(
        self, task: dict[str, Any], report: dict[str, Any], at: datetime
    ) -> bool:
        """Store ``report`` (an envelope's JSON) for the task described by ``task`` (the
        columns of :meth:`record_task`, inserted first if missing) and update its status,
        in one transaction. ``False``: that ``(task_id, report_id)`` was stored already."""
        task_id, kind = report["task_id"], report["kind"]
        values: dict[str, Any] = {}
        if kind in ("finished", "failed"):
            values.update(status=kind, finished_at=at, exit_code=report.get("exit_code"))
        if report.get("percent") is not None:
            values["percent"] = report["percent"]
        if report.get("dropped"):
            values["dropped"] = report["dropped"]

        def work(conn: Connection) -> bool:
            _ensure_task(conn, {**task, "status": "created", "dropped": 0})
            if _has_report(conn, task_id, report["report_id"]):
                return False
            conn.execute(
                insert(WorkerReportRow).values(
                    task_id=task_id,
                    report_id=report["report_id"],
                    kind=kind,
                    body=report,
                    received_at=at,
                )
            )
            row = WorkerTaskRow
            if kind in ("started", "progress"):
                conn.execute(
                    update(row)
                    .where(row.task_id == task_id, row.status == "created")
                    .values(status="running")
                )
            if values:
                conn.execute(update(row).where(row.task_id == task_id).values(**values))
            return True

        try:
            return await self._db.transaction(work, write=True)
        except IntegrityError:  # the same report stored by a concurrent request
            return False
        except Exception as exc:
            raise MemoryStoreError(f"database error while storing a worker report: {exc}") from exc

    async def has_report(self, task_id: str, report_id: str) -> bool:
        """Whether that report of that task is stored."""
        return await self._db.run(
            lambda conn: _has_report(conn, task_id, report_id), "reading reports", write=False
        )

    async def task(self, task_id: str, *, reports: bool = False) -> WorkerTask | None:
        """The stored task (with its reports, oldest first, if ``reports``), or ``None``."""

        def work(conn: Connection) -> WorkerTask | None:
            row = conn.execute(
                select(WorkerTaskRow.__table__).where(WorkerTaskRow.__table__.c.task_id == task_id)
            ).one_or_none()
            if row is None:
                return None
            found = _task(row)
            if reports:
                table = WorkerReportRow.__table__
                rows = conn.execute(
                    select(table.c.report_id, table.c.kind, table.c.body, table.c.received_at)
                    .where(table.c.task_id == task_id)
                    .order_by(table.c.id)
                )
                found.reports.extend(StoredReport(*r) for r in rows)
            return found

        return await self._db.run(work, f"reading worker task {task_id}", write=False)

    async def tasks(
        self, status: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[WorkerTask]:
        """Stored tasks, newest first: of that ``status``, created at or after ``since``."""
        if status is not None and status not in TASK_STATUSES:
            raise MemoryStoreError(
                f"unknown task status {status[:40]!r}: one of {', '.join(TASK_STATUSES)}"
            )
        table = WorkerTaskRow.__table__
        query = select(table).order_by(table.c.created_at.desc()).limit(max(1, min(limit, 1000)))
        if status is not None:
            query = query.where(table.c.status == status)
        if since is not None:
            query = query.where(table.c.created_at >= since.astimezone(UTC))

        def work(conn: Connection) -> list[WorkerTask]:
            return [_task(row) for row in conn.execute(query)]

        return await self._db.run(work, "listing worker tasks", write=False)


def _ensure_task(conn: Connection, row: dict[str, Any]) -> None:
    query = select(WorkerTaskRow.task_id).where(WorkerTaskRow.task_id == row["task_id"])
    if conn.execute(query).first():
        return
    conn.execute(insert(WorkerTaskRow).values(**row))


def _has_report(conn: Connection, task_id: str, report_id: str) -> bool:
    table = WorkerReportRow.__table__
    query = select(table.c.id).where(table.c.task_id == task_id, table.c.report_id == report_id)
    return conn.execute(query).first() is not None


def _task(row: Any) -> WorkerTask:
    return WorkerTask(
        task_id=row.task_id,
        session_id=row.session_id,
        channel_id=row.channel_id,
        token_sha256=row.token_sha256,
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        finished_at=row.finished_at,
        exit_code=row.exit_code,
        percent=row.percent,
        dropped=row.dropped,
    )
