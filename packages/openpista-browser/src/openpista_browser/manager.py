"""One Chromium per process, launched on first use, with one page per session.

Playwright drives the system's Chromium over the DevTools protocol (``executable_path``;
it never downloads a browser). Each session gets its own browser context (cookies and
storage are not shared between sessions) holding one page. Pages unused for
``idle_close`` seconds are closed; when none is left the browser quits too, and the next
call launches it again. A browser that died (crash, killed) is noticed on the next call
and relaunched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from openpista.tools import ToolError, current_turn
from openpista_browser.guard import Blocked
from openpista_browser.proxy import GuardProxy

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright, ViewportSize

    from openpista_browser.settings import BrowserSettings

T = TypeVar("T")

SHARED_SESSION = "shared"
"""The page key of tool calls made outside an agent turn (tests, scripts)."""

QUIET_ARGS = (
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Chromium flags that keep it quiet and working as root in a container."""
GUARDED_ARGS = (
    "--proxy-bypass-list=<-loopback>",  # not even loopback goes around the proxy
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",  # no UDP past it either
)
"""With ``--proxy-server``: every connection of the browser passes :class:`GuardProxy`."""

CRASHED = (
    "the browser closed unexpectedly (crashed or was killed); it has been restarted with "
    "an empty page: call browser.navigate again"
)
IDLE_CLOSED = (
    "the page was closed after {seconds:g} s without use ([tools.browser] idle_close); "
    "call browser.navigate again"
)
CLOSED_BY_PAGE = "the page closed itself (window.close()); call browser.navigate again"


def current_session() -> str:
    """The session whose tool call is running (:data:`SHARED_SESSION` outside a turn)."""
    turn = current_turn()
    return turn.session_id if turn is not None and turn.session_id else SHARED_SESSION


@dataclass
class _Session:
    context: BrowserContext
    page: Page
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class BrowserManager:
    """Owns the Playwright driver, the browser and the pages of all sessions."""

    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._rules = settings.host_rules()  # parsed once: navigation and the proxy share it
        self._proxy: GuardProxy | None = None
        self._sessions: dict[str, _Session] = {}
        self._session_locks: dict[str, asyncio.Lock] = {}
        self._lost: dict[str, str] = {}  # session -> why its page is gone
        self._launch_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self.launches = 0
        """How many times a browser was launched (a relaunch after a crash counts)."""

    @property
    def running(self) -> bool:
        """Whether a browser is up and connected."""
        return self._browser is not None and self._browser.is_connected()

    async def check(self, host: str, port: int) -> None:
        """A ToolError saying why when the browser may not reach ``host``."""
        try:
            await self._rules.resolve(host, port)
        except Blocked as exc:
            raise ToolError(str(exc)) from None

    def refusal(self, host: str, *, exact: bool = False) -> str | None:
        """Why the browser's proxy last refused ``host`` (else, unless ``exact``, its latest
        refusal), if any."""
        return None if self._proxy is None else self._proxy.refusal(host, exact=exact)

    @property
    def sessions(self) -> list[str]:
        """Sessions that have an open page."""
        return list(self._sessions)

    async def run(
        self,
        action: Callable[[Page], Awaitable[T]],
        *,
        session: str | None = None,
        navigates: bool = False,
    ) -> T:
        """Run ``action`` on the page of ``session`` (default: the calling session).

        Calls for one session run one at a time, in the order they were made. When the
        session's page was lost (browser crash, idle close) a :class:`ToolError` says so,
        unless the action ``navigates`` (opens a page itself). A browser that dies during
        ``action`` is relaunched; a navigation is then repeated once.
        """
        from playwright.async_api import Error as PlaywrightError

        key = session or current_session()
        lock = self._session_locks.setdefault(key, asyncio.Lock())
        async with lock:
            for attempt in (1, 2):
                entry = await self._page(key)
                lost = self._lost.pop(key, None)
                if lost is not None and not navigates:
                    raise ToolError(lost)
                try:
                    return await action(entry.page)
                except PlaywrightError as exc:
                    if not self._died(entry, exc):
                        raise
                    await self._forget_browser(CRASHED)
                    self._lost.pop(key, None)
                    if attempt == 2 or not navigates:
                        raise ToolError(CRASHED) from None
                finally:
                    entry.last_used = time.monotonic()
        raise AssertionError("unreachable")  # pragma: no cover

    def _died(self, entry: _Session, exc: Exception) -> bool:
        browser = self._browser
        return (
            browser is None
            or not browser.is_connected()
            or entry.page.is_closed()
            or "has been closed" in str(exc)
        )

    async def _page(self, key: str) -> _Session:
        entry = self._sessions.get(key)
        if entry is not None and not entry.page.is_closed() and self.running:
            return entry
        if entry is not None:
            self._sessions.pop(key, None)
            self._lost[key] = CRASHED if not self.running else CLOSED_BY_PAGE
            with contextlib.suppress(Exception):
                await entry.context.close()
        from playwright.async_api import Error as PlaywrightError

        try:
            context, page = await self._open_page(await self._ensure_browser())
        except PlaywrightError:
            # The browser died between the check and now: start afresh once.
            await self._forget_browser(CRASHED)
            context, page = await self._open_page(await self._ensure_browser())
        page.set_default_timeout(self.settings.element_timeout * 1000)
        page.set_default_navigation_timeout(self.settings.timeout * 1000)
        entry = _Session(context=context, page=page)
        self._sessions[key] = entry
        return entry

    async def _open_page(self, browser: Browser) -> tuple[BrowserContext, Page]:
        viewport: ViewportSize = {
            "width": self.settings.viewport_width,
            "height": self.settings.viewport_height,
        }
        # Service workers would fetch on their own; blocked, every request is the page's.
        context = await browser.new_context(viewport=viewport, service_workers="block")
        return context, await context.new_page()

    async def _ensure_browser(self) -> Browser:
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            await self._forget_browser(CRASHED)
            self._browser = await self._launch()
            self.launches += 1
            if self.settings.idle_close > 0 and (self._reaper is None or self._reaper.done()):
                self._reaper = asyncio.create_task(self._reap(), name="openpista-browser-reaper")
            return self._browser

    async def _launch(self) -> Browser:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        executable = self.settings.find_executable()
        if executable is None:
            raise ToolError(
                "no Chromium or Chrome found on PATH (looked for chromium, chromium-browser, "
                "google-chrome); install Debian's chromium or set [tools.browser] executable"
            )
        env: dict[str, str | float | bool] | None = None
        if self.settings.display:  # Playwright's env replaces the whole environment
            env = {**os.environ, "DISPLAY": self.settings.display}
        if self._proxy is None:
            self._proxy = GuardProxy(self._rules, self.settings.timeout)
            await self._proxy.start()
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        try:
            return await self._playwright.chromium.launch(
                executable_path=executable,
                headless=self.settings.is_headless,
                args=[
                    *QUIET_ARGS,
                    f"--proxy-server={self._proxy.address}",
                    *GUARDED_ARGS,
                    *self.settings.args,
                ],
                env=env,
                timeout=self.settings.timeout * 1000,
            )
        except PlaywrightError as exc:
            await self._stop_driver()
            reason = exc.message.split("\nCall log:")[0].strip()
            raise ToolError(f"cannot start the browser {executable}: {reason}") from None

    async def _forget_browser(self, reason: str | None = None) -> None:
        """Drop the browser and every page; their sessions are told ``reason`` (if any)."""
        sessions, self._sessions = self._sessions, {}
        if reason is not None:
            self._lost.update(dict.fromkeys(sessions, reason))
        browser, self._browser = self._browser, None
        for entry in sessions.values():
            with contextlib.suppress(Exception):
                await entry.context.close()
        if browser is not None:
            with contextlib.suppress(Exception):
                await browser.close()

    async def _stop_driver(self) -> None:
        driver, self._playwright = self._playwright, None
        if driver is not None:
            with contextlib.suppress(Exception):
                await driver.stop()
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            await proxy.close()

    async def close_idle(self) -> None:
        """Close pages unused for ``idle_close`` seconds; quit the browser when none is left."""
        deadline = time.monotonic() - self.settings.idle_close
        for key, entry in list(self._sessions.items()):
            lock = self._session_locks.get(key)
            if entry.last_used > deadline or (lock is not None and lock.locked()):
                continue
            self._sessions.pop(key, None)
            self._session_locks.pop(key, None)
            self._lost[key] = IDLE_CLOSED.format(seconds=self.settings.idle_close)
            with contextlib.suppress(Exception):
                await entry.context.close()
        if not self._sessions and not self._busy():
            async with self._launch_lock:
                if not self._sessions and not self._busy():
                    await self._forget_browser()
                    await self._stop_driver()

    def _busy(self) -> bool:
        return any(lock.locked() for lock in self._session_locks.values())

    async def _reap(self) -> None:
        interval = min(max(self.settings.idle_close / 4, 0.1), 30.0)
        while self._browser is not None:
            await asyncio.sleep(interval)
            await self.close_idle()

    async def close(self) -> None:
        """Close every page, quit the browser and stop the driver."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None and reaper is not asyncio.current_task():
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        async with self._launch_lock:
            await self._forget_browser()
            await self._stop_driver()
