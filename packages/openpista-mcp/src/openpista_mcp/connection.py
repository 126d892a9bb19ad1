"""One MCP server: connect, list its tools, serve calls, restart it with backoff.

A :class:`ServerConnection` lives on the MCP event loop (see :mod:`openpista_mcp.manager`).
Its supervisor task keeps one SDK :class:`mcp.Client` open; when the transport ends (the
program died, the endpoint went away) the state becomes ``failed`` with the reason, and the
server is connected again after 1, 2, 4 ... up to 60 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TextIO, TypeVar

import anyio
import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from openpista import __version__
from openpista.config import ConfigError, home_dir
from openpista.tools import ToolError
from openpista_mcp.settings import SERVING_ENV, ServerSettings

log = logging.getLogger(__name__)

State = Literal["starting", "ready", "failed", "stopped"]

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 60.0
MAX_SSE_EVENT_BYTES = 32 * 1024 * 1024
"""One streamed message (a big tool result) may be this large; the SDK's default is 1 MiB."""
_STDERR_TAIL_BYTES = 2_000
_LIST_PAGES = 50
T = TypeVar("T")
"""A server whose listing never ends is cut off after this many pages."""


class ServerConnection:
    """The connection to one configured server, kept open by :meth:`start`'s task."""

    def __init__(
        self,
        name: str,
        settings: ServerSettings,
        retry: bool = True,
    ) -> None:
        self.name = name
        self._retry = retry
        self.settings = settings
        self.state: State = "starting"
        self.error: str | None = None
        """Why the server is not ready (``failed``), or what went wrong last."""
        self.tools: list[mcp_types.Tool] = []
        self.prompts: list[mcp_types.Prompt] = []
        self.capabilities: mcp_types.ServerCapabilities | None = None
        self.protocol_version: str | None = None
        self.retry_at: float | None = None
        """``time.monotonic()`` of the next connection attempt while ``failed``."""
        self.restarts = 0
        self._on_tools_changed: Callable[[ServerConnection], None] | None = None
        self._client: Client | None = None
        self._settled = asyncio.Event()
        self._lost = asyncio.Event()
        self._protocol_error: str | None = None
        self._http_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.stderr_path = home_dir() / "mcp" / f"{name}.log"
        self._stderr: TextIO | None = None
        self._stderr_start = 0
        self._ready_since = 0.0
        self._scope: anyio.CancelScope | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervisor task (on the running loop)."""
        self._scope = anyio.CancelScope()
        self._task = asyncio.create_task(self._supervise(), name=f"mcp-{self.name}")

    async def wait_settled(self) -> None:
        """Return once the current connection attempt succeeded or failed."""
        await self._settled.wait()

    async def stop(self) -> None:
        """Close the connection (a stdio server's program is ended) and stop restarting."""
        self.state = "stopped"
        # An anyio cancel, not task.cancel(): the SDK shields the ending of a stdio program
        # from the former only.
        if self._scope is not None:
            self._scope.cancel()
        for task in self._background:
            task.cancel()
        tasks = [task for task in (self._task, *self._background) if task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._stderr is not None:
            self._stderr.close()

    async def _supervise(self) -> None:
        delay = INITIAL_BACKOFF
        assert self._scope is not None  # noqa: S101  an invariant for mypy, not a check
        with self._scope:
            while True:
                self._settled.clear()
                self.state = "starting"
                self.retry_at = None
                was_ready = False
                try:
                    was_ready = await self._connect_and_serve()
                except Exception as exc:
                    if isinstance(root_cause(exc), ConfigError):  # retrying cannot help
                        self._give_up(str(root_cause(exc)))
                        return
                    self.error = describe_error(exc)
                    if self._http_error:
                        self.error += f" ({self._http_error})"
                said = self._stderr_tail()
                if said and not was_ready:
                    self.error = f"{self.error}; it wrote: {said}"
                if was_ready:
                    self.restarts += 1
                    if time.monotonic() - self._ready_since > MAX_BACKOFF:
                        delay = INITIAL_BACKOFF  # it served a while: not a crash loop
                self.state = "failed"
                if not self._retry:  # a one-off check (openpista mcp test) reports it itself
                    self._settled.set()
                    return
                self.retry_at = time.monotonic() + delay
                self._settled.set()
                log.error("❌ MCP server %s: %s (retrying in %g s)", self.name, self.error, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def _connect_and_serve(self) -> bool:
        """Connect, list tools, serve until the transport ends; whether it got ready."""
        self._lost = asyncio.Event()
        self._protocol_error = None
        self._http_error = None
        client = Client(
            _watched(self._transport(), self._lost, self._note_stream_error),
            mode="auto",
            message_handler=self._on_message,
            client_info=mcp_types.Implementation(name="openpista", version=__version__),
            cache=None,
        )
        started = anyio.Event()
        timed_out = False

        async def watchdog() -> None:
            nonlocal timed_out
            with anyio.move_on_after(self.settings.startup_timeout):
                await started.wait()
                return
            timed_out = True
            group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(watchdog)
            async with client:
                tools = await _list_tools(client)
                self.prompts = await _list_prompts(client)
                started.set()
                self._serving(client, tools)
                try:
                    if self._listens_for_changes():
                        self._spawn(self._listen(client))
                    await self._lost.wait()
                finally:
                    self._client = None
        if timed_out:
            detail = f"; it sent {self._protocol_error}" if self._protocol_error else ""
            raise ToolError(f"no answer within {self.settings.startup_timeout:g} s{detail}")
        self.error = self._protocol_error or "the connection closed"
        return True

    def _serving(self, client: Client, tools: list[mcp_types.Tool]) -> None:
        self._client = client
        self.tools = tools
        self.capabilities = client.server_capabilities
        self.protocol_version = client.protocol_version
        self.state = "ready"
        self.error = None
        self._ready_since = time.monotonic()
        self._settled.set()
        log.info("MCP server %s ready: %d tool(s)", self.name, len(tools))
        if self._on_tools_changed is not None:  # started late, or restarted: tools may differ
            self._on_tools_changed(self)

    def _open_stderr(self) -> TextIO:
        """The file a stdio server's stderr goes to, ``~/.openpista/mcp/NAME.log`` (it must
        not write over a terminal UI); its start is remembered for :meth:`_stderr_tail`."""
        if self._stderr is not None:
            self._stderr.close()
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("a", encoding="utf-8", errors="replace")
        self._stderr_start = self._stderr.tell()
        return self._stderr

    def _stderr_tail(self) -> str:
        """The last line the stdio server wrote to stderr in this attempt ("" if none)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        with self.stderr_path.open("rb") as handle:
            handle.seek(self._stderr_start)
            written = handle.read()[-_STDERR_TAIL_BYTES:].decode("utf-8", "replace")
        lines = [line.strip() for line in written.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def _transport(self) -> Transport:
        if self.settings.transport == "stdio":
            return _stdio(self.settings, self._open_stderr())
        auth = None
        if self.settings.oauth:
            from openpista_mcp.oauth import provider

            auth = provider(self.name, self.settings)
        return remote_transport(self.settings, auth, self._note_response)

    async def _note_response(self, response: httpx2.Response) -> None:
        # The SDK reports a refused request without its status: keep it for the error.
        if response.status_code >= 400:
            self._http_error = f"HTTP {response.status_code} from {response.url}"

    def _give_up(self, error: str) -> None:
        self.state = "failed"
        self.error = error
        self.retry_at = None
        self._settled.set()
        if self._retry:
            log.error("❌ MCP server %s: %s", self.name, error)

    # --- change notifications ----------------------------------------------------------

    def on_tools_changed(self, callback: Callable[[ServerConnection], None]) -> None:
        """Call ``callback`` (on the MCP loop) whenever the server's tools may have changed:
        it listed them again after a change notification, or it got ready again."""
        self._on_tools_changed = callback

    def _listens_for_changes(self) -> bool:
        tools = self.capabilities.tools if self.capabilities else None
        modern = self.protocol_version in MODERN_PROTOCOL_VERSIONS
        return modern and tools is not None and bool(tools.list_changed)

    async def _listen(self, client: Client) -> None:
        """2026-era servers announce changes on a ``subscriptions/listen`` stream."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    await self._refresh_tools(client)
        except Exception as exc:  # the stream is best effort: the server keeps working
            log.info("MCP server %s: no change notifications (%s)", self.name, exc)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self._note_stream_error(message)
        elif isinstance(message, mcp_types.ToolListChangedNotification) and self._client:
            self._spawn(self._refresh_tools(self._client))

    def _note_stream_error(self, error: Exception) -> None:
        self._protocol_error = f"malformed JSON-RPC ({describe_error(error)})"
        log.warning("MCP server %s sent %s", self.name, self._protocol_error)

    async def _refresh_tools(self, client: Client) -> None:
        try:
            self.tools = await _list_tools(client)
        except Exception as exc:
            log.warning("MCP server %s: listing its changed tools failed: %s", self.name, exc)
            return
        log.info("MCP server %s changed its tools: %d now", self.name, len(self.tools))
        if self._on_tools_changed is not None:
            self._on_tools_changed(self)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- calls -------------------------------------------------------------------------

    async def client(self) -> Client:
        """The open client; waits while (re)connecting, raises ToolError when down."""
        if self._lost.is_set():
            self._mark_lost()
        if self.state == "starting":
            await self._settled.wait()
        if self._client is None or self.state != "ready":
            again = ""
            if self.retry_at is not None:
                wait = max(0.0, self.retry_at - time.monotonic())
                again = f"; openpista connects again in {wait:.0f} s"
            raise ToolError(f"MCP server {self.name} is not available: {self.error}{again}")
        return self._client

    def _mark_lost(self) -> None:
        """The transport ended: calls wait for the supervisor's next attempt."""
        if self.state == "ready":
            self.state = "starting"
            self._settled.clear()
        self._lost.set()

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call ``tool``; every failure is a ToolError naming the server and the tool."""
        client = await self.client()
        label = f"MCP tool {tool} of server {self.name}"
        try:
            return await client.call_tool(
                tool, arguments, read_timeout_seconds=self.settings.timeout
            )
        except Exception as exc:
            raise self._call_error(label, exc) from None

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        """Read resource ``uri``; failures as for :meth:`call_tool`."""
        client = await self.client()
        try:
            with anyio.fail_after(self.settings.timeout):
                return await client.read_resource(uri)
        except Exception as exc:
            raise self._call_error(f"reading {uri} from MCP server {self.name}", exc) from None

    async def get_prompt(self, name: str, arguments: dict[str, str]) -> mcp_types.GetPromptResult:
        """Render prompt ``name``; failures as for :meth:`call_tool`."""
        client = await self.client()
        try:
            with anyio.fail_after(self.settings.timeout):
                return await client.get_prompt(name, arguments)
        except Exception as exc:
            raise self._call_error(f"prompt {name} of MCP server {self.name}", exc) from None

    async def list_resources(self) -> list[mcp_types.Resource]:
        """Every resource the server lists (page by page, bounded)."""
        client = await self.client()
        try:
            with anyio.fail_after(self.settings.timeout):
                found = await _all_pages(client.list_resources, lambda page: page.resources)
        except Exception as exc:
            raise self._call_error(f"listing the resources of {self.name}", exc) from None
        return found

    def _call_error(self, label: str, exc: Exception) -> ToolError:
        if isinstance(exc, ToolError):
            return exc
        if isinstance(exc, TimeoutError) or (
            isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT
        ):
            hint = f" (the server sent {self._protocol_error})" if self._protocol_error else ""
            return ToolError(f"{label} timed out after {self.settings.timeout:g} s{hint}")
        if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            self._mark_lost()
            return ToolError(
                f"{label} failed: the server closed the connection during the call; "
                "openpista starts it again"
            )
        return ToolError(f"{label} failed: {describe_error(exc)}")


def remote_transport(
    settings: ServerSettings,
    auth: httpx2.Auth | None = None,
    on_response: Callable[[httpx2.Response], Awaitable[None]] | None = None,
) -> Transport:
    """The transport of a ``url`` server: streamable HTTP or legacy SSE."""
    assert settings.url is not None  # noqa: S101  an invariant for mypy, not a check
    headers = settings.request_headers()
    if settings.transport == "sse":
        return sse_client(
            settings.url, headers=headers, timeout=settings.startup_timeout, auth=auth
        )
    # The SDK's own defaults: a response stream may stay quiet for minutes.
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30.0, read=300.0),
        auth=auth,
        event_hooks={"response": [on_response]} if on_response else {},
    )
    return streamable_http_client(
        settings.url, http_client=http, max_sse_event_size=MAX_SSE_EVENT_BYTES
    )


@contextlib.asynccontextmanager
async def open_client(settings: ServerSettings, auth: httpx2.Auth) -> AsyncIterator[Client]:
    """A one-off connection to a remote server with ``auth`` (``openpista mcp login``)."""
    async with Client(remote_transport(settings, auth), cache=None) as client:
        yield client


def _stdio(settings: ServerSettings, errlog: TextIO) -> Transport:
    from mcp.client.stdio import stdio_client

    assert settings.command is not None  # noqa: S101  an invariant for mypy, not a check
    env = dict(settings.env)
    if os.environ.get(SERVING_ENV):  # an openpista serving: its child must know (a loop)
        env[SERVING_ENV] = os.environ[SERVING_ENV]
    params = StdioServerParameters(
        command=settings.command,
        args=settings.args,
        env=env or None,
        cwd=settings.cwd.expanduser() if settings.cwd else None,
    )
    return stdio_client(params, errlog=errlog)


@contextlib.asynccontextmanager
async def _watched(
    transport: Transport, lost: asyncio.Event, on_error: Callable[[Exception], None]
) -> AsyncIterator[tuple[Any, Any]]:
    """``transport`` with its end noticed: ``lost`` is set when the server's stream ends,
    and every unparseable message is reported to ``on_error`` on its way to the session."""
    async with transport as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            try:
                async with send:
                    async for item in read:
                        if isinstance(item, Exception):
                            on_error(item)
                        await send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            finally:
                lost.set()

        async with anyio.create_task_group() as group:
            group.start_soon(pump)
            try:
                yield receive, write
            finally:
                group.cancel_scope.cancel()


async def _list_prompts(client: Client) -> list[mcp_types.Prompt]:
    if client.server_capabilities.prompts is None:
        return []
    return await _all_pages(client.list_prompts, lambda page: page.prompts)


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    return await _all_pages(client.list_tools, lambda page: page.tools)


async def _all_pages(
    request: Callable[..., Awaitable[Any]], items: Callable[[Any], list[T]]
) -> list[T]:
    """Every item of a paginated MCP listing (``cursor`` / ``next_cursor``), at most
    ``_LIST_PAGES`` pages: a server cannot keep us paging forever."""
    found: list[T] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):
        page = await request(cursor=cursor)
        found.extend(items(page))
        cursor = page.next_cursor
        if cursor is None:
            break
    return found


def root_cause(exc: BaseException) -> BaseException:
    """``exc`` out of the exception groups of task groups (the first one's)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe_error(exc: BaseException) -> str:
    """One readable line for what went wrong (exception groups unwrapped)."""
    exc = root_cause(exc)
    if isinstance(exc, ToolError | MCPError):
        return str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"command not found: {exc.filename}"
    text = str(exc).strip() or "no details"
    return f"{type(exc).__name__}: {text}"
