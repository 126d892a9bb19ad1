"""A worker report endpoint for tests: the real app on 127.0.0.1 over a real database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from openpista.serving import EmbeddedServer, bind_tcp
from openpista.worker_api import REPORT_PATH, build_app
from openpista.worker_service import WorkerReports
from openpista.workers import TaskGrant, WorkerHub

API_TOKEN = "api-token-for-tests"
"""The workers API token of :func:`start_endpoint`'s server."""


@dataclass
class Endpoint:
    """A running endpoint: its hub, report service, server and URLs."""

    hub: WorkerHub
    reports: WorkerReports
    server: EmbeddedServer
    url: str
    db_url: str

    @property
    def report_url(self) -> str:
        return self.url + REPORT_PATH

    @property
    def port(self) -> int:
        """The TCP port served (also once stopped: a restart may listen there again)."""
        return int(self.url.rsplit(":", 1)[1])

    def grant(self, **options: Any) -> TaskGrant:
        """Open a task of ``session-1`` in ``cli:local``."""
        return self.hub.open_task("session-1", "cli:local", **options)

    async def post(
        self, grant: TaskGrant | None, body: Any, *, token: str | None = None, raw: bool = False
    ) -> httpx.Response:
        """POST a report (``body`` as JSON, or bytes as they are with ``raw``) with the
        grant's credential (or ``token``)."""
        headers: dict[bytes, bytes] = {}
        secret = token if token is not None else (grant.token if grant else "")
        if secret:
            headers[b"Authorization"] = f"Bearer {secret}".encode()
        content = body if raw else json.dumps(body).encode()
        async with httpx.AsyncClient() as client:
            return await client.post(self.report_url, content=content, headers=headers)


async def start_endpoint(
    hub: WorkerHub,
    db_url: str,
    *,
    port: int = 0,
    max_bytes: int = 64_000,
    api_token: str = API_TOKEN,
) -> Endpoint:
    """Serve ``hub``'s reports into the database at ``db_url`` on 127.0.0.1:``port``."""
    reports = await WorkerReports.open(hub, db_url)
    server = EmbeddedServer(build_app(reports, api_token, max_bytes), name="worker endpoint")
    await server.start(bind_tcp("127.0.0.1", port))
    return Endpoint(hub, reports, server, f"http://127.0.0.1:{server.port}", db_url)


async def stop_endpoint(endpoint: Endpoint) -> None:
    """Stop serving, store what is queued, close the database."""
    await endpoint.server.stop()
    await endpoint.reports.close()
