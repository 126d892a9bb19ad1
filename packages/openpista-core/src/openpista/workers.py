"""Sandbox workers report back to the session that started them.

The orchestrator (a tool such as ``container.run``) opens a task, hands the worker the task
id and a short-lived secret, and waits for the report. A worker delivers its report through
whatever endpoint the daemon offers: the versioned reports of :mod:`openpista.worker_protocol`
go to :mod:`openpista.worker_service` (``POST /api/worker-report``, QUIC, the docker plugin's
socket), which stores them and hands the final one to :meth:`WorkerHub.deliver`; an endpoint
that stores nothing itself may call :meth:`WorkerHub.submit`. Either checks the secret
before accepting anything. The secret is
revoked when the task ends, whatever the outcome::

    hub = worker_hub()
    grant = hub.open_task(session_id, channel_id, ttl=600)
    try:
        start_worker(env=grant.environment(hub.report_url))
        report = await hub.wait(grant.task_id, timeout=300)
    finally:
        hub.revoke(grant.task_id)

A report never names a host path or a URL: each attachment carries its bytes inline
(``data``, base64) or names a file of the task's own output directory (``path``, relative
to the directory given to :meth:`WorkerHub.open_task`), which the hub reads when the report
arrives, one component at a time and without following symlinks. Files and inline bytes
together are capped per task (``max_file_bytes``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field, field_validator

from openpista.files import ConfinementError, confined_parts, read_confined
from openpista.models import Attachment

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 5_000_000
"""Bytes of attachments (inline and read from the output directory) a report may carry."""

_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


class WorkerAuthError(Exception):
    """A report was refused: an unknown task id, a wrong, expired or revoked secret, or a
    second report of its task."""


class WorkerReportError(WorkerAuthError):
    """A report with a valid secret, refused for its attachments (a file outside the task's
    output directory, a symlink, too many bytes). A :class:`WorkerAuthError`, so endpoints
    that refuse those refuse these as well; nothing was accepted."""


class WorkerReport(BaseModel):
    """What a worker sends back when its task is done (the same JSON on every transport).

    ``attachments`` carry inline ``data`` or a ``path`` relative to the task's output
    directory, never a ``url`` or an absolute path (validated here, resolved by the hub).
    """

    task_id: str = Field(max_length=64)
    status: Literal["ok", "error"] = "ok"
    exit_code: int | None = None
    output: str = ""
    attachments: list[Attachment] = Field(default_factory=list)

    @field_validator("attachments")
    @classmethod
    def _inline_or_relative(cls, attachments: list[Attachment]) -> list[Attachment]:
        for item in attachments:
            check_attachment(item)
        return attachments


def check_attachment(item: Attachment) -> None:
    """Raise ValueError unless ``item`` is a safely named inline file or a path relative to
    a task's output directory (the rule for every report attachment)."""
    if not item.name or len(item.name) > 255 or _BAD_NAME.search(item.name):
        raise ValueError(f"attachment name {item.name[:80]!r} is not a plain file name")
    if not _MIME.fullmatch(item.mime_type) or len(item.mime_type) > 127:
        raise ValueError(f"attachment {item.name}: {item.mime_type[:80]!r} is not a MIME type")
    if item.url is not None:
        raise ValueError(
            f"attachment {item.name}: reports carry no URLs; send the bytes in 'data' or "
            "name a file of the task's output directory in 'path'"
        )
    if (item.data is None) == (item.path is None):
        raise ValueError(f"attachment {item.name}: give exactly one of 'data' or 'path'")
    if item.data is not None:
        try:
            base64.b64decode(item.data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"attachment {item.name}: 'data' is not base64") from None
    else:
        assert item.path is not None  # noqa: S101  an invariant for mypy, not a check
        try:
            confined_parts(item.path)
        except ConfinementError as exc:
            raise ValueError(
                f"attachment {item.name}: 'path' must be relative to the task's output "
                f"directory ({exc})"
            ) from None


@dataclass(frozen=True)
class TaskGrant:
    """An open task: its id, the secret its worker must present, and who is waiting."""

    task_id: str
    token: str
    session_id: str
    channel_id: str
    expires_at: float
    output_dir: Path | None = None
    """The host directory a report's ``path`` attachments are read from (``None``: inline
    data only)."""
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    created_at: float = 0.0

    def environment(self, report_url: str | None = None) -> dict[str, str]:
        """The variables that hand this task to its worker: ``OPENPISTA_TASK_ID``,
        ``OPENPISTA_TASK_TOKEN`` and, given an endpoint, ``OPENPISTA_REPORT_URL``."""
        env = {"OPENPISTA_TASK_ID": self.task_id, "OPENPISTA_TASK_TOKEN": self.token}
        if report_url:
            env["OPENPISTA_REPORT_URL"] = report_url
        return env


HubEvent = Literal["opened", "reported", "revoked"]


class HubListener(Protocol):
    """Told of a hub's tasks as they open, report and end (see :meth:`WorkerHub.subscribe`)."""

    def __call__(
        self, event: HubEvent, grant: TaskGrant, report: WorkerReport | None, /
    ) -> None: ...


@dataclass
class _Task:
    grant: TaskGrant
    report: asyncio.Future[WorkerReport] = field(default_factory=asyncio.Future)


class WorkerHub:
    """The open tasks of this process and the reports they are waiting for."""

    def __init__(self) -> None:
        self._tasks: dict[str, _Task] = {}
        self._listeners: list[HubListener] = []
        self.report_url: str | None = None
        """The HTTP report endpoint workers should use (set by the daemon that serves it)."""

    def open_task(
        self,
        session_id: str,
        channel_id: str = "",
        ttl: float = 600.0,
        *,
        output_dir: Path | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> TaskGrant:
        """Open a task whose worker may report within ``ttl`` seconds (call in the loop).

        Its report's ``path`` attachments are read from ``output_dir`` (none without it);
        its attachments may hold ``max_file_bytes`` bytes in all.
        """
        now = time.time()
        grant = TaskGrant(
            task_id=secrets.token_hex(8),
            token=secrets.token_urlsafe(32),
            session_id=session_id,
            channel_id=channel_id,
            expires_at=now + ttl,
            created_at=now,
            output_dir=output_dir,
            max_file_bytes=max_file_bytes,
        )
        self._tasks[grant.task_id] = _Task(grant)
        self._emit("opened", grant, None)
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

    def grant(self, task_id: str) -> TaskGrant | None:
        """The open task ``task_id`` (expired or not), or ``None``; checks no credential."""
        task = self._tasks.get(task_id)
        return None if task is None else task.grant

    def submit(self, token: str, report: WorkerReport) -> TaskGrant:
        """Accept ``report`` for its task, its ``path`` attachments read into inline data.

        Raises WorkerAuthError (and changes nothing) when the credential is wrong, expired
        or revoked, or the task already reported, and :class:`WorkerReportError` when an
        attachment is not a file of the task's output directory or they are too large.
        """
        grant = self.verify(report.task_id, token)
        if self._tasks[report.task_id].report.done():
            raise WorkerAuthError("the task has already reported")
        inlined = inline_attachments(report, grant)
        self.deliver(inlined)
        self._emit("reported", grant, inlined)
        return grant

    def deliver(self, report: WorkerReport) -> bool:
        """Hand an already checked and inlined ``report`` to whoever waits for its task;
        ``False`` when the task is not open here or has its report already."""
        task = self._tasks.get(report.task_id)
        if task is None or task.report.done():
            return False
        task.report.set_result(report)
        return True

    def subscribe(self, listener: HubListener) -> None:
        """Call ``listener(event, grant, report)`` for every ``opened`` and ``revoked``
        task and every ``reported`` task (a report accepted by :meth:`submit`)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: HubListener) -> None:
        """Stop calling ``listener`` (no error if it was not subscribed)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, event: HubEvent, grant: TaskGrant, report: WorkerReport | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, grant, report)
            except Exception:
                log.exception("worker hub listener failed on %s", event)

    async def wait(self, task_id: str, timeout: float | None = None) -> WorkerReport:  # noqa: ASYNC109
        """The task's report; ``TimeoutError`` if none arrives within ``timeout`` seconds."""
        task = self._tasks.get(task_id)
        if task is None:
            raise KeyError(f"no open task {task_id!r}")
        return await asyncio.wait_for(asyncio.shield(task.report), timeout)

    def revoke(self, task_id: str) -> None:
        """End the task: its credential stops working at once (idempotent)."""
        task = self._tasks.pop(task_id, None)
        if task is None:
            return
        if not task.report.done():
            task.report.cancel()
        self._emit("revoked", task.grant, None)

    def open_tasks(self) -> list[TaskGrant]:
        """The tasks still waiting for a report."""
        return [task.grant for task in self._tasks.values()]


def inline_attachments(report: WorkerReport, grant: TaskGrant) -> WorkerReport:
    """``report`` with each ``path`` attachment replaced by the bytes of that file of the
    grant's output directory; WorkerReportError for a file outside it or too many bytes."""
    budget = grant.max_file_bytes
    inlined = []
    for item in report.attachments:
        if item.path is None:
            size = len(base64.b64decode(item.data or ""))
        elif grant.output_dir is None:
            raise WorkerReportError(
                f"attachment {item.name}: this task has no output directory; send the bytes "
                "inline ('data')"
            )
        else:
            try:
                data = read_confined(grant.output_dir, item.path, max(budget, 0))
            except ConfinementError as exc:
                raise WorkerReportError(f"attachment {item.name}: {exc}") from None
            size = len(data)
            item = item.model_copy(update={"path": None, "data": base64.b64encode(data).decode()})
        budget -= size
        if budget < 0:
            raise WorkerReportError(
                f"the attachments are larger than {grant.max_file_bytes:,} bytes in all"
            )
        inlined.append(item)
    return report.model_copy(update={"attachments": inlined})


_HUB: WorkerHub | None = None


def worker_hub() -> WorkerHub:
    """The hub of this process, shared by the tools that start workers and the endpoints
    that receive their reports."""
    global _HUB
    if _HUB is None:
        _HUB = WorkerHub()
    return _HUB
