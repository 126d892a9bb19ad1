"""An httpx transport whose connection pool costs the same with 1 or 1,000 connections.

httpcore's pool re-examines every pooled connection whenever a request starts or ends: an
expiry check with two system calls (``getpeername`` and ``poll``) per idle connection, and
a count of all connections per idle one (so its keep-alive limit counts busy connections
too). With a hundred sessions streaming at once that was most of the provider's CPU
(docs/providers.md). :class:`LeanConnectionPool` keeps httpcore's connections, request
queue, timeouts and retries, and changes only how requests are matched to connections: a
connection is checked for expiry (keep-alive elapsed, or closed by the server) when it is
about to be reused, every connection at most once per :data:`SWEEP_SECONDS`, a connection
is given to one request at a time (HTTP/1.1: :class:`LeanTransport` speaks no HTTP/2), and
the keep-alive limit counts idle connections only.

Built on httpcore 1.x (``AsyncConnectionPool._assign_requests_to_connections``) and httpx's
``AsyncHTTPTransport._pool``; tests/test_providers_http.py fails if either changes.
"""

from __future__ import annotations

import time

import httpcore
import httpx

SWEEP_SECONDS = 1.0
"""How often every pooled connection is checked for expiry (idle ones closed meanwhile)."""


class LeanConnectionPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, requests matched to connections without a check of each one."""

    _swept_at = float("-inf")

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        """Drop closed connections, close surplus idle and (at a sweep) expired ones,
        then give each queued request a reusable connection or a new one. The closing
        connections are returned (closed by the caller)."""
        now = time.monotonic()
        sweep = now - self._swept_at >= SWEEP_SECONDS
        if sweep:
            self._swept_at = now
        closing: list[httpcore.AsyncConnectionInterface] = []
        kept: list[httpcore.AsyncConnectionInterface] = []
        idle = 0
        for connection in self._connections:
            if connection.is_closed():
                continue
            surplus = connection.is_idle() and idle >= self._max_keepalive_connections
            if surplus or (sweep and connection.has_expired()):
                closing.append(connection)
            else:
                kept.append(connection)
                idle += connection.is_idle()
        # An HTTP/1.1 connection serves one request at a time: one given to a request that
        # has not started on it yet is still idle, but taken (httpcore's pool gives it out
        # again, and the loser of the race retries with another pass over the pool).
        taken = {r.connection for r in self._requests if r.connection is not None}
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            reused = _reusable(kept, origin, taken, closing, checked=sweep)
            if reused is not None:
                connection = reused
            else:
                if len(kept) >= self._max_connections:
                    spare = next((c for c in kept if c.is_idle() and c not in taken), None)
                    if spare is None:
                        continue  # stays queued until a connection is released
                    kept.remove(spare)
                    closing.append(spare)
                connection = self.create_connection(origin)
                kept.append(connection)
            taken.add(connection)
            pool_request.assign_to_connection(connection)
        self._connections = kept
        return closing

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        """A new connection to ``origin``; the TLS context is built for the first ``https``
        one (httpx's, which honours ``SSL_CERT_FILE``): loading the CA bundle takes ~50-100 ms
        that a plain-``http`` (loopback) provider never needs."""
        if origin.scheme == b"https" and self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return super().create_connection(origin)


def _reusable(
    kept: list[httpcore.AsyncConnectionInterface],
    origin: httpcore.Origin,
    taken: set[httpcore.AsyncConnectionInterface],
    closing: list[httpcore.AsyncConnectionInterface],
    *,
    checked: bool,
) -> httpcore.AsyncConnectionInterface | None:
    """The first available connection of ``kept`` to ``origin`` not ``taken``;
    those found expired on the way (unless ``checked`` by this pass's sweep) move from
    ``kept`` to ``closing``."""
    expired = []
    found = None
    for connection in kept:
        if connection in taken or not connection.can_handle_request(origin):
            continue
        if not connection.is_available():
            continue
        if not checked and connection.has_expired():
            expired.append(connection)
            continue
        found = connection
        break
    for connection in expired:
        kept.remove(connection)
        closing.append(connection)
    return found


class LeanTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (no proxy: httpx mounts its own for the proxy variables) over a
    :class:`LeanConnectionPool`."""

    def __init__(self, limits: httpx.Limits) -> None:
        # Not super().__init__(): it would build httpcore's pool and an SSL context, unused.
        # The pool builds its own SSL context when it first connects over TLS.
        self._pool = LeanConnectionPool(
            ssl_context=None,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )
