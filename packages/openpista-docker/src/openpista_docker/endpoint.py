"""The local worker endpoint: HTTP on a unix socket that sandboxed workers report to.

Containers have no network, so the socket's directory is bind-mounted (read-only) into each
container at :data:`CONTAINER_DIR`. A worker sends ``POST /report`` with its task secret in
``Authorization: Bearer <token>`` and a report: a versioned
:class:`~openpista.worker_protocol.ReportEnvelope`, or the original format (a
:class:`~openpista.workers.WorkerReport`, no ``v``: the task's final report, ``report_id``
``final``). It goes to the process's :class:`~openpista.worker_service.WorkerReports` of the
hub, the one path of every transport: checked, stored, then answered with its
:class:`~openpista.worker_protocol.Ack` (``accepted``, ``duplicate``, ``unknown_task``,
``expired``, ``invalid``, ``too_large``; the HTTP status of ``POST /api/worker-report``),
so a report acknowledged here survives the daemon being killed. 503 (send it again) while
nothing stores reports; 404/405 elsewhere. ``path`` attachments are read from the task's
output directory only.
The directory also holds ``report``, a stdlib-only Python client (:mod:`openpista_docker.report`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from openpista.worker_api import report_response
from openpista.worker_service import active_reports
from openpista.workers import WorkerHub

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
    """The ASGI app of the endpoint: ``POST /report`` into the reports service of ``hub``."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def report(request: Request) -> Response:
        reports = active_reports(hub)
        return await report_response(reports, request, max_bytes, unversioned=True)

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
