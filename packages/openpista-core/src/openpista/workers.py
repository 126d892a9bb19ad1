"""Sandbox workers report back to the session that started them.

The orchestrator (a tool such as ``container.run``) opens a task, hands the worker the task
id and a short-lived secret, and waits for the report. A worker delivers its report through
whatever endpoint the daemon offers (the mobile plugin's QUIC server, or the docker plugin's
local socket); that endpoint calls :meth:`WorkerHub.submit`, which checks the secret before
accepting anything. The secret is revoked when the task ends, whatever the outcome::

    hub = worker_hub()
    grant = hub.open_task(session_id, channel_id, ttl=600)
    try:
        start_worker(env={"OPENPISTA_TASK_ID": grant.task_id, "OPENPISTA_TASK_TOKEN": grant.token})
        report = await hub.wait(grant.task_id, timeout=300)
    finally:
        hub.revoke(grant.task_id)
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from openpista.models import Attachment


class WorkerAuthError(Exception):
    """A report came with an unknown task id or a wrong, expired or revoked secret."""


class WorkerReport(BaseModel):
    """What a worker sends back when its task is done (the same JSON on every transport)."""

    task_id: str
    status: Literal["ok", "error"] = "ok"
    exit_code: int | None = None
    output: str = ""
    attachments: list[Attachment] = Field(default_factory=list)


@dataclass(frozen=True)
class TaskGrant:
    """An open task: its id, the secret its worker must present, and who is waiting."""

    task_id: str
    token: str
    session_id: str
    channel_id: str
    expires_at: float


@dataclass
class _Task:
    grant: TaskGrant
    report: asyncio.Future[WorkerReport] = field(default_factory=asyncio.Future)


class WorkerHub:
    """The open tasks of this process and the reports they are waiting for."""

    def __init__(self) -> None:
        self._tasks: dict[str, _Task] = {}

    def open_task(self, session_id: str, channel_id: str = "", ttl: float = 600.0) -> TaskGrant:
        """Open a task whose worker may report within ``ttl`` seconds (call in the loop)."""
        grant = TaskGrant(
            task_id=secrets.token_hex(8),
            token=secrets.token_urlsafe(32),
            session_id=session_id,
            channel_id=channel_id,
            expires_at=time.time() + ttl,
        )
        self._tasks[grant.task_id] = _Task(grant)
        return grant

    def verify(self, task_id: str, token: str) -> TaskGrant:
        """The grant of ``task_id`` if ``token`` is its valid secret; else WorkerAuthError."""
        task = self._tasks.get(task_id)
        # Compare against a dummy when the task is unknown, so timing tells nothing.
        expected = task.grant.token if task is not None else secrets.token_urlsafe(32)
        if not hmac.compare_digest(expected.encode(), token.encode()) or task is None:
            raise WorkerAuthError("unknown task or wrong credential")
        if task.grant.expires_at < time.time():
            raise WorkerAuthError("the task's credential has expired")
        return task.grant

    def submit(self, token: str, report: WorkerReport) -> TaskGrant:
        """Accept ``report`` for its task; raises WorkerAuthError (and changes nothing)
        when the credential is wrong, expired or revoked, or the task already reported."""
        grant = self.verify(report.task_id, token)
        future = self._tasks[report.task_id].report
        if future.done():
            raise WorkerAuthError("the task has already reported")
        future.set_result(report)
        return grant

    async def wait(self, task_id: str, timeout: float | None = None) -> WorkerReport:  # noqa: ASYNC109
        """The task's report; ``TimeoutError`` if none arrives within ``timeout`` seconds."""
        task = self._tasks.get(task_id)
        if task is None:
            raise KeyError(f"no open task {task_id!r}")
        return await asyncio.wait_for(asyncio.shield(task.report), timeout)

    def revoke(self, task_id: str) -> None:
        """End the task: its credential stops working at once (idempotent)."""
        task = self._tasks.pop(task_id, None)
        if task is not None and not task.report.done():
            task.report.cancel()

    def open_tasks(self) -> list[TaskGrant]:
        """The tasks still waiting for a report."""
        return [task.grant for task in self._tasks.values()]


_HUB: WorkerHub | None = None


def worker_hub() -> WorkerHub:
    """The hub of this process, shared by the tools that start workers and the endpoints
    that receive their reports."""
    global _HUB
    if _HUB is None:
        _HUB = WorkerHub()
    return _HUB
