"""The daemon side of worker reports: check, store, then acknowledge; and the live feed.

:class:`WorkerReports` answers each :class:`~openpista.worker_protocol.ReportEnvelope` with
an :class:`~openpista.worker_protocol.Ack`, whatever transport carried it:

1. the credential is checked in constant time against the task's (the open task of this
   process, else the SHA-256 stored when the task opened, so a daemon restart does not
   orphan a running worker): no task with that id and that secret is ``unknown_task``;
2. a report stored before is ``duplicate`` (also after the task ended: the worker stops
   retrying);
3. a revoked or expired credential is ``expired``; a second final report, or attachments
   refused by the hub's rules, ``invalid``;
4. the report is committed to the memory database (:class:`~openpista.memory.WorkerLog`),
   then handed to the tool waiting for it, published on the feed, and ``accepted``.

Every built-in transport goes through :meth:`WorkerReports.receive` or
:meth:`WorkerReports.accept`: ``POST /api/worker-report``, the docker plugin's unix socket,
the QUIC ``worker_envelope`` and ``worker_report`` frames. A report in the original format
(no ``v``) is the task's final report, ``report_id`` ``final``
(:meth:`~openpista.worker_protocol.ReportEnvelope.from_report`).

It also listens to the :class:`~openpista.workers.WorkerHub`: tasks opened and revoked, and
reports a plugin's own endpoint hands to :meth:`~openpista.workers.WorkerHub.submit`, are
stored (after the fact) and published too.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from openpista.jsonsafe import JsonInputError, loads
from openpista.memory import MemoryStoreError, WorkerLog, WorkerTask
from openpista.memory.worker_reports import token_digest
from openpista.worker_protocol import FINAL_REPORT_ID, Ack, AckResult, ReportEnvelope
from openpista.workers import (
    TaskGrant,
    WorkerHub,
    WorkerReport,
    WorkerReportError,
    inline_attachments,
)

log = logging.getLogger(__name__)

FEED_QUEUE_SIZE = 1_000
"""Events a slow feed subscriber may fall behind by; past that it loses the oldest."""
_FORGET_ENDED = 10_000
_DUMMY_DIGEST = token_digest("no task has this credential")


class WorkerFeed:
    """Fan-out of worker events to live subscribers (the WebSocket feed), never blocking
    the publisher: a subscriber too slow to keep up loses its oldest events."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue receiving every event from now on (give it back with
        :meth:`unsubscribe`)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FEED_QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding ``queue``."""
        self._queues.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        """Send ``event`` to every subscriber."""
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)


_FEED: WorkerFeed | None = None


def worker_feed() -> WorkerFeed:
    """The feed of this process's worker events: subscribe to see every task created,
    started, progressing, finished, failed or ended (the ``/api/workers/stream`` WebSocket,
    a channel showing its chats' workers). Each event is a dict with ``v``, ``event``,
    ``task_id``, ``session_id``, ``channel_id`` and ``at``, plus ``report_id``, ``log``,
    ``percent``, ``exit_code`` (and ``output`` when final) for reports."""
    global _FEED
    if _FEED is None:
        _FEED = WorkerFeed()
    return _FEED


class WorkerReports:
    """Accept, store and publish the reports of one hub's tasks into one worker log."""

    def __init__(
        self, hub: WorkerHub, worker_log: WorkerLog, feed: WorkerFeed | None = None
    ) -> None:
        self.hub = hub
        self.log = worker_log
        self.feed = feed or worker_feed()
        """Where its events go (the process's :func:`worker_feed` unless given)."""
        self._ended: dict[str, str] = {}  # task id -> credential digest, of revoked tasks
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen to the hub (call in the event loop); until :meth:`stop`,
        :func:`active_reports` returns this service (the newest started, of its hub)."""
        self.hub.subscribe(self._on_hub_event)
        self._writer = asyncio.create_task(self._write_in_order())
        _active.append(self)

    async def stop(self) -> None:
        """Stop listening; writes already queued are finished first."""
        if self in _active:
            _active.remove(self)
        self.hub.unsubscribe(self._on_hub_event)
        if self._writer is not None:
            await self._writes.join()
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None

    @classmethod
    async def open(cls, hub: WorkerHub, url: str) -> WorkerReports:
        """A started service for ``hub`` over the memory database at ``url`` (close it with
        :meth:`close`)."""
        reports = cls(hub, await WorkerLog.open(url))
        reports.start()
        return reports

    async def close(self) -> None:
        """:meth:`stop`, then close the worker log."""
        await self.stop()
        await self.log.close()

    async def flush(self) -> None:
        """Wait until the hub events so far are stored."""
        await self._writes.join()

    async def receive(
        self, token: str, body: bytes, max_bytes: int, *, unversioned: bool = False
    ) -> Ack:
        """The answer to a raw report ``body`` sent with ``token`` (``""``: none); with
        ``unversioned``, a body without ``v`` is a report in the original format."""
        if len(body) > max_bytes:
            return Ack(result="too_large", detail=f"report larger than {max_bytes} bytes")
        try:
            data = loads(body, max_bytes=max_bytes)
        except JsonInputError as exc:
            return Ack(result="invalid", detail=f"the report is not JSON: {exc}")
        ids = _ids(data)
        if not token:
            return _ack("unknown_task", "missing credential", ids)
        try:
            if unversioned and isinstance(data, dict) and "v" not in data:
                ids["report_id"] = FINAL_REPORT_ID
                envelope = ReportEnvelope.from_report(WorkerReport.model_validate(data))
            else:
                envelope = ReportEnvelope.model_validate(data)
        except ValidationError as exc:
            return _ack("invalid", f"invalid report: {_problems(exc)}", ids)
        return await self.accept(token, envelope)

    async def accept_report(self, token: str, report: WorkerReport) -> Ack:
        """The answer to a report in the original format: :meth:`accept` of its envelope
        (:meth:`~openpista.worker_protocol.ReportEnvelope.from_report`)."""
        try:
            envelope = ReportEnvelope.from_report(report)
        except ValidationError as exc:
            ids = {"task_id": report.task_id[:64], "report_id": FINAL_REPORT_ID}
            return _ack("invalid", f"invalid report: {_problems(exc)}", ids)
        return await self.accept(token, envelope)

    async def accept(self, token: str, envelope: ReportEnvelope) -> Ack:
        """The answer to a well-formed report: stored and ``accepted``, or why not."""
        ids = {"task_id": envelope.task_id, "report_id": envelope.report_id}
        grant = self.hub.grant(envelope.task_id)
        stored = await self.log.task(envelope.task_id)
        ended = self._ended.get(envelope.task_id)
        if grant is not None:
            expected = token_digest(grant.token)
        elif stored is not None:
            expected = stored.token_sha256
        else:  # ended here before its row was written, or unknown
            expected = ended or _DUMMY_DIGEST
        if not hmac.compare_digest(expected, token_digest(token)) or expected is _DUMMY_DIGEST:
            return _ack("unknown_task", "unknown task or wrong credential", ids)
        if await self.log.has_report(envelope.task_id, envelope.report_id):
            return _ack("duplicate", "this report is stored already", ids)
        if reason := self._expired(envelope.task_id, grant, stored):
            return _ack("expired", reason, ids)
        if envelope.final and stored is not None and stored.status in ("finished", "failed"):
            return _ack("invalid", "the task has sent its final report", ids)
        if envelope.attachments and not envelope.final:
            return _ack("invalid", "only a final report carries attachments", ids)
        owner = grant or _grant_of(stored)
        report = _as_report(envelope)
        try:
            report = inline_attachments(report, owner)
        except WorkerReportError as exc:
            return _ack("invalid", f"report refused: {exc}", ids)
        body = envelope.model_dump(mode="json")
        body["attachments"] = [item.model_dump(mode="json") for item in report.attachments]
        if not await self.log.store_report(_task_columns(owner), body, _now()):
            return _ack("duplicate", "this report is stored already", ids)
        if envelope.final:
            self.hub.deliver(report)
        self.feed.publish(_event(envelope.kind, owner, envelope))
        log.info(
            "worker report %s (%s) stored for task %s",
            envelope.report_id[:64],
            envelope.kind,
            envelope.task_id,
        )
        return _ack("accepted", "", ids)

    def _expired(self, task_id: str, grant: TaskGrant | None, stored: WorkerTask | None) -> str:
        now = _now()
        if task_id in self._ended or (grant is None and stored and stored.revoked_at):
            return "the task has ended: its credential is revoked"
        expires = grant.expires_at if grant else stored.expires_at.timestamp() if stored else 0
        if expires < now.timestamp():
            return "the task's credential has expired"
        return ""

    def _on_hub_event(self, event: str, grant: TaskGrant, report: WorkerReport | None) -> None:
        if event == "opened":
            self._queue(self._opened(grant))
            self.feed.publish(_event("created", grant, None))
        elif event == "revoked":
            self._ended[grant.task_id] = token_digest(grant.token)
            if len(self._ended) > _FORGET_ENDED:
                self._ended.pop(next(iter(self._ended)))
            self._queue(self.log.end_task(grant.task_id, _now()))
            self.feed.publish(_event("ended", grant, None))
        elif report is not None:
            kind: Literal["finished", "failed"] = "finished" if report.status == "ok" else "failed"
            envelope = ReportEnvelope(
                task_id=grant.task_id,
                report_id="hub-final",
                kind=kind,
                exit_code=report.exit_code,
                output=report.output[:200_000],
            )
            body = envelope.model_dump(mode="json")
            body["attachments"] = [item.model_dump(mode="json") for item in report.attachments]
            self._queue(self._stored(grant, body))
            self.feed.publish(_event(kind, grant, envelope))

    def _queue(self, write: Awaitable[None]) -> None:
        async def run() -> None:
            await write

        self._writes.put_nowait(run)

    async def _opened(self, grant: TaskGrant) -> None:
        created = datetime.fromtimestamp(grant.created_at or grant.expires_at, UTC)
        expires = datetime.fromtimestamp(grant.expires_at, UTC)
        await self.log.record_task(
            grant.task_id, grant.session_id, grant.channel_id, grant.token, created, expires
        )

    async def _stored(self, grant: TaskGrant, body: dict[str, Any]) -> None:
        await self.log.store_report(_task_columns(grant), body, _now())

    async def _write_in_order(self) -> None:
        while True:
            write = await self._writes.get()
            try:
                await write()
            except MemoryStoreError as exc:
                log.warning("a worker task event was not stored: %s", exc)
            except Exception:  # the writer goes on: stop() waits for the queue to drain
                log.exception("a worker task event was not stored")
            finally:
                self._writes.task_done()


_active: list[WorkerReports] = []  # started services, oldest first


def active_reports(hub: WorkerHub | None = None) -> WorkerReports | None:
    """The service that stores this process's worker reports (the daemon's, the TUI's), or
    ``None``: what a transport (QUIC, the docker socket) hands a report to. Given ``hub``,
    only a service of that hub."""
    found = [reports for reports in _active if hub is None or reports.hub is hub]
    return found[-1] if found else None


async def own_reports(hub: WorkerHub, url: str) -> WorkerReports | None:
    """For a process that runs workers without a daemon (``openpista run --no-daemon``): a
    started service of ``hub`` over the database at ``url`` if none is active for it (the
    caller closes it), else ``None``; a database that cannot be opened is logged and gives
    ``None`` too (reports are then answered 503: send again)."""
    if active_reports(hub) is not None:
        return None
    try:
        return await WorkerReports.open(hub, url)
    except MemoryStoreError as exc:
        log.warning("worker reports are not stored: %s", exc)
        return None


def _ack(result: AckResult, detail: str, ids: dict[str, str]) -> Ack:
    """An ACK (or a NACK) naming the report's ids."""
    return Ack(
        result=result,
        detail=detail,
        task_id=ids.get("task_id", ""),
        report_id=ids.get("report_id", ""),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _ids(data: object) -> dict[str, str]:
    """The task and report ids of a report that may not validate, for its ACK."""
    if not isinstance(data, dict):
        return {}
    return {
        key: value[:64]
        for key in ("task_id", "report_id")
        if isinstance(value := data.get(key), str)
    }


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'report'}: {error['msg']}"
        for error in exc.errors()[:5]
    )


def _as_report(envelope: ReportEnvelope) -> WorkerReport:
    return WorkerReport(
        task_id=envelope.task_id,
        status="error" if envelope.kind == "failed" else "ok",
        exit_code=envelope.exit_code,
        output=envelope.output,
        attachments=envelope.attachments,
    )


def _grant_of(stored: WorkerTask | None) -> TaskGrant:
    """A stand-in grant for a task opened by an earlier daemon: no output directory (its
    reports carry inline attachments only)."""
    assert stored is not None  # noqa: S101  an invariant for mypy, not a check
    return TaskGrant(
        task_id=stored.task_id,
        token="",
        session_id=stored.session_id,
        channel_id=stored.channel_id,
        expires_at=stored.expires_at.timestamp(),
        created_at=stored.created_at.timestamp(),
    )


def _task_columns(grant: TaskGrant) -> dict[str, Any]:
    created = datetime.fromtimestamp(grant.created_at or grant.expires_at, UTC)
    return {
        "task_id": grant.task_id,
        "session_id": grant.session_id,
        "channel_id": grant.channel_id,
        "token_sha256": token_digest(grant.token) if grant.token else "",
        "created_at": created,
        "expires_at": datetime.fromtimestamp(grant.expires_at, UTC),
    }


def _event(event: str, grant: TaskGrant, envelope: ReportEnvelope | None) -> dict[str, Any]:
    """A feed event: ``created``, ``started``, ``progress``, ``finished``, ``failed`` or
    ``ended``, naming the task and the session and chat that started it."""
    payload: dict[str, Any] = {
        "v": 1,
        "event": event,
        "task_id": grant.task_id,
        "session_id": grant.session_id,
        "channel_id": grant.channel_id,
        "at": _now().isoformat(),
    }
    if envelope is not None:
        payload.update(
            report_id=envelope.report_id,
            log=envelope.log,
            percent=envelope.percent,
            exit_code=envelope.exit_code,
        )
        if envelope.final:
            payload["output"] = envelope.output[:4_000]
    return payload
