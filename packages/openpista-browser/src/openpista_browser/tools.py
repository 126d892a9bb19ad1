"""The ``browser.*`` tools: navigate, click, type, screenshot and read the page."""

# No ``from __future__ import annotations``: the tool decorator evaluates the parameter
# annotations, which use the factory's local values.

import base64
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field

from openpista.models import Attachment
from openpista.tools import CapturedText, Tool, ToolError, ToolOutput, tool
from openpista_browser.settings import BrowserSettings

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

    from openpista_browser.manager import BrowserManager

T = TypeVar("T")

ALLOWED_SCHEMES = frozenset({"http", "https"})
"""What browser.navigate opens, besides ``about:blank``; hosts are checked (guard.py)."""
_PROXY_REFUSED = "net::ERR_TUNNEL_CONNECTION_FAILED"
_HOST_FIRST = re.compile(r"^[\w.-]+(:\d+)?(/|$)")  # "example.org/x", "localhost:8000"
_API_PREFIX = re.compile(r"^\w+\.\w+: ")  # "Page.goto: " in front of Playwright's messages


def make_browser_tools(
    settings: BrowserSettings, browser: Callable[[], "BrowserManager"]
) -> list[Tool]:
    """The five browser tools (``settings`` gives their limits), all driving the pages of
    ``browser()``, first called (and the manager's modules loaded) by the first call."""
    element_wait = f"{settings.element_timeout:g} s"

    @tool("browser.navigate")
    async def navigate(
        url: Annotated[
            str,
            Field(description="The address to open; https:// is assumed when none is given."),
        ],
    ) -> str:
        """Open a web page in the browser (one page per conversation, kept between calls).

        Returns the final address, HTTP status and title; read the page with browser.text
        and look at it with browser.screenshot.
        """
        target = _full_url(url)
        host, port = _host_port(target)
        if host is not None:
            try:
                await browser().check(host, port)
            except ToolError as exc:
                raise ToolError(f"cannot open {target}: {exc}") from None

        async def go(page: "Page") -> str:
            return await _open(browser(), page, target, host)

        return await _on_page(browser(), go, f"cannot open {target}", navigates=True)

    @tool("browser.click")
    async def click(
        selector: Annotated[
            str | None, Field(description="CSS selector of the element to click.")
        ] = None,
        text: Annotated[
            str | None,
            Field(description="Visible text of the button, link or element to click."),
        ] = None,
    ) -> str:
        """Click an element of the current page, found by CSS selector or by its visible text.

        Give exactly one of `selector` and `text`. Waits for a page the click opens.
        """
        if (selector is None) == (text is None):
            raise ToolError("give exactly one of `selector` (CSS) and `text` (visible text)")
        described = f"selector {selector!r}" if selector is not None else f"text {text!r}"

        async def press(page: "Page") -> str:
            target = _target(page, selector, text)
            await _require(target, described, element_wait)
            await target.click()
            await page.wait_for_load_state("load", timeout=settings.timeout * 1000)
            return f"Clicked the element with {described}; now at {page.url}"

        return await _on_page(browser(), press, f"cannot click {described}")

    @tool("browser.type")
    async def type_text(
        selector: Annotated[str, Field(description="CSS selector of the input field.")],
        text: Annotated[str, Field(description="The text to put into the field.")],
        submit: Annotated[
            bool, Field(description="Press Enter afterwards (submits most forms).")
        ] = False,
    ) -> str:
        """Replace the content of an input field of the current page with `text`."""
        described = f"selector {selector!r}"

        async def fill(page: "Page") -> str:
            target = page.locator(selector).first
            await _require(target, described, element_wait)
            await target.fill(text)
            done = f"Typed {len(text)} characters into the field with {described}"
            if not submit:
                return done
            await target.press("Enter")
            await page.wait_for_load_state("load", timeout=settings.timeout * 1000)
            return f"{done} and pressed Enter; now at {page.url}"

        return await _on_page(browser(), fill, f"cannot type into {described}")

    @tool("browser.screenshot")
    async def screenshot(
        full_page: Annotated[
            bool, Field(description="Capture the whole scrollable page, not just the view.")
        ] = False,
    ) -> ToolOutput:
        """Take a PNG screenshot of the current page; it is shown to you and to the user."""

        async def shoot(page: "Page") -> tuple[str, bytes]:
            return page.url, await page.screenshot(type="png", full_page=full_page)

        url, png = await _on_page(browser(), shoot, "cannot take a screenshot")
        picture = Attachment(
            name="screenshot.png",
            mime_type="image/png",
            data=base64.b64encode(png).decode("ascii"),
        )
        return ToolOutput(
            text=f"Screenshot of {url} ({len(png):,} bytes PNG)", attachments=[picture]
        )

    @tool("browser.text")
    async def page_text(
        selector: Annotated[
            str | None,
            Field(description="CSS selector to read only matching elements (default: all)."),
        ] = None,
    ) -> str:
        """Read the visible text of the current page (or of the elements matching `selector`).

        Long text is cut in the middle.
        """

        async def read(page: "Page") -> str:
            body = await _visible_text(page, selector, element_wait)
            header = f"URL: {page.url}\nTitle: {await page.title()}\n\n"
            return header + _clip(body, settings.max_text_chars)

        what = "cannot read the page" if selector is None else f"cannot read selector {selector!r}"
        return await _on_page(browser(), read, what)

    return [navigate, click, type_text, screenshot, page_text]


async def _on_page(
    manager: "BrowserManager",
    action: Callable[["Page"], Awaitable[T]],
    what: str,
    *,
    navigates: bool = False,
) -> T:
    """Run ``action`` on the session's page; Playwright errors become ToolErrors."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        return await manager.run(action, navigates=navigates)
    except PlaywrightTimeout as exc:
        raise ToolError(f"{what}: timed out ({_reason(exc)})") from None
    except PlaywrightError as exc:
        raise ToolError(f"{what}: {_reason(exc)}") from None


async def _visible_text(page: "Page", selector: str | None, element_wait: str) -> str:
    """The page's visible text, or that of the elements matching ``selector``."""
    if selector is None:
        return await page.locator("body").inner_text()
    target = page.locator(selector)
    await _require(target.first, f"selector {selector!r}", element_wait)
    return "\n".join(await target.all_inner_texts())


async def _open(manager: "BrowserManager", page: "Page", target: str, host: str | None) -> str:
    """Go to ``target``; a refusal of the guarding proxy becomes a ToolError saying why."""
    from playwright.async_api import Error as PlaywrightError

    from openpista_browser.proxy import BLOCKED_HEADER, UNREACHABLE_HEADER

    try:
        response = await page.goto(target, wait_until="load")
    except PlaywrightError as exc:
        refused = manager.refusal(host or "") if _PROXY_REFUSED in str(exc) else None
        if refused is None:
            raise
        raise ToolError(f"cannot open {target}: {refused}") from None
    if response is None:
        return f"Opened {page.url} (no HTTP response); title: {await page.title()!r}"
    headers = response.headers
    if BLOCKED_HEADER.lower() in headers or UNREACHABLE_HEADER.lower() in headers:
        # The proxy's answer, or a site pretending to be it: only the proxy's own record of
        # the final host counts, and its words, not the header's, reach the LLM.
        refused = manager.refusal(urlsplit(response.url).hostname or "", exact=True)
        if refused is not None:
            raise ToolError(f"cannot open {target}: {refused}")
    return f"Opened {page.url} (HTTP {response.status}); title: {await page.title()!r}"


def _full_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise ToolError("give the address to open, for example https://example.org/")
    if _HOST_FIRST.match(url):
        return "https://" + url
    if url.lower() == "about:blank":
        return url
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ToolError(
            f"cannot open {url}: blocked: the scheme {scheme!r} is not allowed (only http, "
            "https and about:blank)"
        )
    return url


def _host_port(url: str) -> tuple[str | None, int]:
    """The host and port ``url`` connects to (``None`` for about:blank)."""
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        return None, 0
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ToolError(f"cannot open {url}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ToolError(f"cannot open {url}: the address has no host name")
    return parts.hostname, port


def _clip(text: str, limit: int) -> str:
    """``text`` cut in the middle to ``limit`` characters, marked like system.run's output."""
    middle = len(text) // 2
    return CapturedText(head=text[:middle], tail=text[middle:]).clipped(limit).render()


def _target(page: "Page", selector: str | None, text: str | None) -> "Locator":
    if selector is not None:
        return page.locator(selector).first
    by_role = page.get_by_role("button", name=text).or_(page.get_by_role("link", name=text))
    return by_role.or_(page.get_by_text(text or "")).first


async def _require(target: "Locator", described: str, wait: str) -> None:
    """Wait for ``target`` to appear; a clear ToolError when it does not."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await target.wait_for(state="attached")
    except PlaywrightTimeout:
        raise ToolError(f"no element on the page matches {described} (waited {wait})") from None


def _reason(exc: Any) -> str:
    """Playwright's message without its call log, e.g. ``net::ERR_CONNECTION_REFUSED ...``."""
    message = str(getattr(exc, "message", "") or exc)
    return _API_PREFIX.sub("", message.split("\nCall log:")[0].strip())
