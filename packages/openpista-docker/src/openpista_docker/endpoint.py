"""The local worker endpoint: HTTP on a unix socket that sandboxed workers report to.

Containers have no network, so the socket's directory is bind-mounted (read-only) into each
container at :data:`CONTAINER_DIR`. A worker sends ``POST /report`` with its
:class:`~openpista.workers.WorkerReport` as JSON and its task secret in
``Authorization: Bearer <token>``; the endpoint hands it to :func:`openpista.workers.worker_hub`,
which checks the secret and reads the files its attachments name from the task's output
directory (never elsewhere). Answers: 200 accepted, 400 malformed or an attachment refused,
401 no credential, 403 wrong/expired/revoked credential or already reported, 413 too large,
404/405 elsewhere.
The directory also holds ``report``, a stdlib-only Python client (:mod:`openpista_docker.report`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from openpista.jsonsafe import JsonInputError, loads, log_rejected
from openpista.serving import BodyTooLargeError, bearer, read_body
from openpista.workers import WorkerAuthError, WorkerHub, WorkerReport, WorkerReportError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from openpista.serving import EmbeddedServer

log = logging.getLogger(__name__)

CONTAINER_DIR = "/run/openpista"
"""Where the endpoint's directory appears inside a container."""
SOCKET_NAME = "worker.sock"
HELPER_NAME = "report"


def build_app(hub: WorkerHub, max_bytes: int) -> Starlette:
    """The ASGI app of the endpoint: ``POST /report`` into ``hub``."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def refuse(status: int, message: str) -> Response:
        return JSONResponse({"ok": False, "error": message}, status_code=status)

    async def report(request: Request) -> Response:
        token = bearer(request.headers.get("authorization"))
        if not token:
            return refuse(401, "missing credential: send `Authorization: Bearer <task token>`")
        try:
            body = await read_body(request, max_bytes)
        except BodyTooLargeError:
            return refuse(413, f"report larger than {max_bytes} bytes")
        try:
            data = loads(body, max_bytes=max_bytes)
        except JsonInputError as exc:
            log_rejected(log, "worker endpoint", exc)
            return refuse(400, f"the report is not JSON: {exc}")
        try:
            parsed = WorkerReport.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'report'}: {e['msg']}"
                for e in exc.errors()
            )
            return refuse(400, f"invalid report: {problems}")
        try:
            grant = hub.submit(token.strip(), parsed)
        except WorkerReportError as exc:
            log.warning("worker report refused for task %s: %s", parsed.task_id[:32], exc)
            return refuse(400, f"report refused: {exc}")
        except WorkerAuthError as exc:
            log.warning("worker report refused for task %s: %s", parsed.task_id[:32], exc)
            return refuse(403, f"report refused: {exc}")
        log.info("worker report accepted for task %s (session %s)", grant.task_id, grant.session_id)
        return JSONResponse({"ok": True, "task_id": grant.task_id})

    return Starlette(routes=[Route("/report", report, methods=["POST"])])


class WorkerEndpoint:
    """uvicorn serving :func:`build_app` on a unix socket, in the running event loop."""

    def __init__(self, hub: WorkerHub, max_bytes: int) -> None:
        self.hub = hub
        self.max_bytes = max_bytes
        # A directory of its own: all of it is visible (read-only) inside every container.
        # In the system's temp dir (socket paths are limited to 108 bytes), named after this
        # process so that a later start can remove it if the process crashes.
        self.directory = Path(tempfile.mkdtemp(prefix=f"openpista-docker-{os.getpid()}-"))
        self.socket_path = self.directory / SOCKET_NAME
        self._server: EmbeddedServer | None = None

    @property
    def running(self) -> bool:
        """Whether the server accepts reports."""
        return self._server is not None

    async def start(self) -> None:
        """Create the socket (and the helper next to it) and serve until :meth:`stop`."""
        from openpista.serving import EmbeddedServer, bind_unix

        # Workers run as another user: they must reach the socket; the token guards it.
        self.directory.chmod(0o755)
        self._install_helper()
        server = EmbeddedServer(
            build_app(self.hub, self.max_bytes), name="worker endpoint", grace=1
        )
        await server.start(bind_unix(self.socket_path, mode=0o666))
        self._server = server
        log.info("worker endpoint listens on %s", self.socket_path)

    def _install_helper(self) -> None:
        helper = self.directory / HELPER_NAME
        shutil.copyfile(Path(__file__).with_name("report.py"), helper)
        helper.chmod(0o755)

    async def stop(self) -> None:
        """Stop serving and remove the directory with the socket and the helper."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
