"""The MCP servers of one runtime, connected on an event loop of their own.

Tools must be known when the runtime collects them (``register_tools`` is synchronous), so
the servers are started there, all at once, on a thread running the MCP loop: the runtime's
own loop waits at most the slowest server's ``startup_timeout``. Calls from the runtime's
loop are handed over with :meth:`McpManager.run` (cancelling the caller cancels the call).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from openpista_mcp.connection import ServerConnection
from openpista_mcp.settings import McpSettings

T = TypeVar("T")

_CLOSE_TIMEOUT = 10.0


class McpManager:
    """Starts, serves and closes the enabled servers of ``settings`` (or server ``only``);
    ``retry=False`` for a one-off check: a failed server is not retried nor logged."""

    def __init__(self, settings: McpSettings, only: str | None = None, retry: bool = True) -> None:
        self.settings = settings
        servers = settings.enabled() if only is None else {only: settings.servers[only]}
        self.connections = {
            name: ServerConnection(name, server, retry=retry) for name, server in servers.items()
        }
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="openpista-mcp", daemon=True
        )
        self._closed = False

    def start(self) -> None:
        """Connect every server concurrently; return when each is ready or has failed
        (a failed one keeps being retried in the background)."""
        self._thread.start()
        self._submit(self._start_all()).result()

    async def _start_all(self) -> None:
        for connection in self.connections.values():
            connection.start()
        await asyncio.gather(*(c.wait_settled() for c in self.connections.values()))

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the MCP loop from any other loop."""
        if self._closed:
            coro.close()
            raise RuntimeError("the MCP connections are closed")
        return await asyncio.wrap_future(self._submit(coro))

    def close_sync(self) -> None:
        """Stop every server (stdio programs end) and the MCP loop; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            stopping = self._submit(self._stop_all())
            try:
                stopping.result(_CLOSE_TIMEOUT)
            except concurrent.futures.TimeoutError:
                stopping.cancel()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CLOSE_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    async def close(self) -> None:
        """:meth:`close_sync` without blocking the caller's loop."""
        await asyncio.to_thread(self.close_sync)

    async def _stop_all(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.connections.values()))
