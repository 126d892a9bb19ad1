"""The ``/metrics`` endpoint: Prometheus text exposition on ``[metrics] host``:``port``.

A small threaded HTTP server (the standard library's, with prometheus_client's WSGI app),
so that a scrape never waits for the event loop. With ``[metrics] token`` a scrape must
send ``Authorization: Bearer <token>`` (compared in constant time) or gets ``401``.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
from collections.abc import Callable, Collection, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from openpista.serving import announce, withdraw

if TYPE_CHECKING:
    from openpista.config import MetricsSettings
    from openpista.observability.metrics import PrometheusRecorder, Recorder

log = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one every few seconds)."""


def metrics_app(recorder: PrometheusRecorder, token: str | None) -> WsgiApp:
    """A WSGI app answering ``GET /metrics`` with ``recorder``'s metrics (404 elsewhere),
    refusing a scrape without the bearer ``token`` when one is set."""
    from prometheus_client import make_wsgi_app

    exposition = make_wsgi_app(recorder.registry)
    expected = f"Bearer {token}".encode() if token else None

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the metrics are at /metrics\n"]
        sent = str(environ.get("HTTP_AUTHORIZATION", "")).encode("utf-8", "replace")
        if expected is not None and not hmac.compare_digest(sent, expected):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"unauthorized: send Authorization: Bearer <[metrics] token>\n"]
        body: Iterable[bytes] = exposition(environ, start_response)
        return body

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves :func:`metrics_app` in a background thread until :meth:`stop`."""

    def __init__(self, recorder: PrometheusRecorder, settings: MetricsSettings) -> None:
        self._recorder = recorder
        self._settings = settings
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` (the real port once started)."""
        host, port = self._address()
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def _address(self) -> tuple[str, int]:
        if self._server is None:
            return self._settings.host, self._settings.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen; ``OSError`` names the option to change when the address is taken."""
        settings = self._settings
        token = settings.token.get_secret_value() if settings.token else None
        app = metrics_app(self._recorder, token)
        try:
            kind = _ThreadingServer6 if ":" in settings.host else _ThreadingServer
            server = make_server(
                settings.host, settings.port, app, kind, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot serve metrics on {settings.host}:{settings.port} ({exc.strerror}); "
                "change [metrics] port",
            ) from None
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        announce(self, "metrics", self.url)

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        withdraw(self)
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def serve_metrics(
    recorder: Recorder, settings: MetricsSettings, channels: Collection[str] = ()
) -> MetricsServer | None:
    """Start the ``/metrics`` endpoint when ``[metrics] enabled`` (``recorder`` is then a
    :class:`PrometheusRecorder`); ``None`` when metrics are off or mounted on the web
    channel (warned once when ``web`` is not among the served ``channels``)."""
    from openpista.observability.metrics import PrometheusRecorder

    if not settings.enabled or not isinstance(recorder, PrometheusRecorder):
        return None
    if settings.mount == "web":
        if "web" not in channels:
            log.warning(
                '❌ [metrics] mount = "web" but the web channel is not served: no /metrics '
                'anywhere (enable [channels.web] or set mount = "port")'
            )
        return None
    server = MetricsServer(recorder, settings)
    server.start()
    return server
