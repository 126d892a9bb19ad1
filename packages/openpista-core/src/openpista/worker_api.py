"""The worker report endpoint and history API the daemon serves (``[workers]``).

- ``POST /api/worker-report``: one :class:`~openpista.worker_protocol.ReportEnvelope`, with
  ``Authorization: Bearer <task token>``; answered with an
  :class:`~openpista.worker_protocol.Ack` (its HTTP status in
  :data:`~openpista.worker_protocol.HTTP_STATUS`; ``503`` while the database fails).
- ``GET /api/workers?status=&since=&limit=`` and ``GET /api/workers/{task_id}``: the stored
  tasks (the latter with its reports and log lines), with the API token.
- ``/api/workers/stream``: a WebSocket pushing the feed's events (the API token in
  ``Authorization: Bearer`` or ``?token=``); its first message is a ``snapshot`` of the
  running tasks.

Served on TCP (default ``127.0.0.1``, port ``0`` = any free port, announced in ``openpista
status``): a worker on another host or a host-side collector can reach it, which a unix
socket cannot give; containers without network keep the docker plugin's socket.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpista.memory import MemoryStoreError, WorkerTask
from openpista.serving import BodyTooLargeError, bearer, read_body
from openpista.worker_protocol import Ack
from openpista.worker_service import WorkerReports
from openpista.workers import WorkerHub, worker_hub

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.websockets import WebSocket

    from openpista.config import Settings
    from openpista.serving import EmbeddedServer

log = logging.getLogger(__name__)

REPORT_PATH = "/api/worker-report"


def parse_since(value: str) -> datetime:
    """``since`` as ISO-8601 (``2026-12-03T10:00:00Z``; no zone is UTC) or Unix seconds;
    ``ValueError`` naming the accepted forms."""
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValueError(
            f"since={value[:40]!r} is not a time: give ISO-8601 or Unix seconds"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_app(reports: WorkerReports, api_token: str, max_bytes: int) -> Starlette:
    """The ASGI app: the report endpoint, the history API and the live feed."""
    from starlette.applications import Starlette
    from starlette.routing import Route, WebSocketRoute

    api = _Api(reports, api_token, max_bytes)
    return Starlette(
        routes=[
            Route(REPORT_PATH, api.report, methods=["POST"]),
            Route("/api/workers", api.tasks, methods=["GET"]),
            Route("/api/workers/{task_id}", api.task, methods=["GET"]),
            WebSocketRoute("/api/workers/stream", api.stream),
        ]
    )


class _Api:
    def __init__(self, reports: WorkerReports, api_token: str, max_bytes: int) -> None:
        self.reports = reports
        self.api_token = api_token
        self.max_bytes = max_bytes

    def _authorized(self, token: str) -> bool:
        # An empty token (none sent, or an empty one configured) never matches.
        matches = hmac.compare_digest(token.encode(), self.api_token.encode())
        return matches and bool(self.api_token)

    async def report(self, request: Request) -> Response:
        return await report_response(self.reports, request, self.max_bytes)

    async def tasks(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if not self._authorized(bearer(request.headers.get("authorization"))):
            return _refuse(401, _API_CREDENTIAL)
        query = request.query_params
        try:
            since = parse_since(query["since"]) if query.get("since") else None
            limit = int(query.get("limit", "100"))
            found = await self.reports.log.tasks(query.get("status") or None, since, limit)
        except (ValueError, MemoryStoreError) as exc:
            return _refuse(400, str(exc))
        return JSONResponse({"v": 1, "tasks": [task.public() for task in found]})

    async def task(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if not self._authorized(bearer(request.headers.get("authorization"))):
            return _refuse(401, _API_CREDENTIAL)
        found = await self.reports.log.task(request.path_params["task_id"], reports=True)
        if found is None:
            return _refuse(404, "no such worker task")
        return JSONResponse({"v": 1, "task": task_detail(found)})

    async def stream(self, websocket: WebSocket) -> None:
        from starlette.websockets import WebSocketDisconnect

        headers, query = websocket.headers, websocket.query_params
        if not self._authorized(bearer(headers.get("authorization")) or query.get("token", "")):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        queue = self.reports.feed.subscribe()
        closed = asyncio.create_task(_until_closed(websocket))
        try:
            log_ = self.reports.log
            running = [*await log_.tasks("created"), *await log_.tasks("running")]
            await websocket.send_json(
                {"v": 1, "event": "snapshot", "tasks": [t.public() for t in running]}
            )
            while not closed.done():
                event = asyncio.create_task(queue.get())
                await asyncio.wait({event, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not event.done():
                    event.cancel()
                    break
                await websocket.send_json(event.result())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            closed.cancel()
            self.reports.feed.unsubscribe(queue)


async def report_response(
    reports: WorkerReports | None, request: Request, max_bytes: int, *, unversioned: bool = False
) -> Response:
    """The answer to one report request (``POST`` of a report, ``Authorization: Bearer <task
    token>``): its ACK, stored before it is sent, with the ACK's HTTP status; ``503`` when
    ``reports`` is ``None`` (this process stores none) or the database fails, so the worker
    sends it again. ``unversioned``: see :meth:`WorkerReports.receive`."""
    token = bearer(request.headers.get("authorization"))
    if reports is None:
        return _refuse(503, "this process stores no worker reports; send it again later")
    try:
        body = await read_body(request, max_bytes)
    except BodyTooLargeError:
        return _answer(Ack(result="too_large", detail=f"report larger than {max_bytes} bytes"))
    try:
        ack = await reports.receive(token, body, max_bytes, unversioned=unversioned)
    except MemoryStoreError as exc:
        log.warning("a worker report could not be stored: %s", exc)
        return _refuse(503, "the report could not be stored; send it again later")
    if ack.result != "accepted":
        log.info("worker report %s: %s", ack.result, ack.detail)
    return _answer(ack, 401 if ack.result == "unknown_task" and not token else None)


async def _until_closed(websocket: WebSocket) -> None:
    """Return once the client has gone (what it sends is ignored)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


_API_CREDENTIAL = "send `Authorization: Bearer <workers API token>`"


def _answer(ack: Ack, status: int | None = None) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(ack.model_dump(), status_code=status or ack.http_status)


def _refuse(status: int, message: str) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"v": 1, "error": message}, status_code=status)


def task_detail(task: WorkerTask) -> dict[str, Any]:
    """A stored task with its reports and all their log lines, attachments by name and size
    only."""
    detail = task.public()
    detail["logs"] = [line for item in task.reports for line in item.body.get("log", [])]
    detail["reports"] = [
        {
            "report_id": item.report_id,
            "kind": item.kind,
            "received_at": item.received_at.isoformat(),
            **{k: v for k, v in item.body.items() if k not in ("attachments", "v", "task_id")},
            "attachments": [
                {"name": a.get("name"), "bytes": len(a.get("data") or "") * 3 // 4}
                for a in item.body.get("attachments", [])
            ],
        }
        for item in task.reports
    ]
    return detail


def api_token(settings: Settings) -> str:
    """The workers API token: ``[workers] api_token``, else the one in the token file
    (written, mode 0600, with a new random token if missing)."""
    configured = settings.workers.api_token
    if configured is not None:
        return configured.get_secret_value()
    path = token_path(settings)
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def token_path(settings: Settings) -> Path:
    """Where the generated workers API token is kept (beside the PID file)."""
    return settings.gateway.pid_file.expanduser().parent / "workers.token"


class WorkerEndpoint:
    """The daemon's worker reports: :class:`WorkerReports` recording the hub's tasks, served
    by ``build_app`` on TCP when ``[workers] enabled``."""

    def __init__(self, settings: Settings, hub: WorkerHub | None = None) -> None:
        self.settings = settings
        self.hub = hub or worker_hub()
        self.reports: WorkerReports | None = None
        self._server: EmbeddedServer | None = None

    @property
    def url(self) -> str:
        """The report URL workers are given (``OPENPISTA_REPORT_URL``)."""
        assert self._server is not None  # noqa: S101  an invariant for mypy, not a check
        assert self._server.socket is not None  # noqa: S101  an invariant for mypy, not a check
        from openpista.serving import socket_url

        return socket_url(self._server.socket, "http") + REPORT_PATH

    async def start(self) -> None:
        """Open the worker log and record the hub's tasks; with ``[workers] enabled``, also
        listen and tell the hub the report URL."""
        from openpista.serving import EmbeddedServer, bind_tcp

        options = self.settings.workers
        self.reports = await WorkerReports.open(self.hub, self.settings.database.url)
        if not options.enabled:
            return
        try:
            app = build_app(self.reports, api_token(self.settings), options.max_report_bytes)
            server = EmbeddedServer(
                app, name="worker endpoint", grace=1, ws_max_size=options.max_report_bytes
            )
            await server.start(bind_tcp(options.host, options.port, option="[workers] port"))
        except BaseException:
            await self.stop()
            raise
        self._server = server
        self.hub.report_url = self.url

    async def stop(self) -> None:
        """Stop serving; store what is queued; close the worker log."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        self.hub.report_url = None
        if self.reports is not None:
            await self.reports.close()
            self.reports = None
