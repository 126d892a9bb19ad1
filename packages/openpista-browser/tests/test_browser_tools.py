"""The browser tools against real headless Chromium and pages served on loopback."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

from openpista.models import ToolCall, ToolResult
from openpista.tools.registry import ToolRegistry
from openpista_browser.manager import CRASHED, BrowserManager
from openpista_browser.settings import BrowserSettings
from openpista_browser.tools import make_browser_tools

from .conftest import SITE_HOSTS

RED = (255, 0, 0)
WHITE = (255, 255, 255)


async def call(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    return await registry.dispatch(ToolCall(id="t", name=name, arguments=arguments))


async def ok(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    result = await call(registry, name, **arguments)
    assert not result.is_error, result.output
    return result


async def test_navigate_then_read_the_page(registry: ToolRegistry, site: str) -> None:
    opened = await ok(registry, "browser.navigate", url=site + "/")
    assert opened.output == f"Opened {site}/ (HTTP 200); title: 'Build status'"
    text = await ok(registry, "browser.text")
    assert text.output.startswith(f"URL: {site}/\nTitle: Build status\n\n")
    assert "The build is green" in text.output
    only = await ok(registry, "browser.text", selector="#status")
    assert only.output.endswith("\n\nThe build is green")


async def test_http_error_status_is_reported_not_hidden(registry: ToolRegistry, site: str) -> None:
    opened = await ok(registry, "browser.navigate", url=site + "/missing")
    assert "(HTTP 404)" in opened.output


async def test_a_site_cannot_pose_as_the_proxy(registry: ToolRegistry, site: str) -> None:
    """A page sending the proxy's refusal headers is just a page: the LLM never gets its
    words as openpista's."""
    opened = await ok(registry, "browser.navigate", url=site + "/spoof")
    assert opened.output == f"Opened {site}/spoof (HTTP 200); title: 'Spoof'"


async def test_click_by_visible_text_and_by_selector(registry: ToolRegistry, site: str) -> None:
    await ok(registry, "browser.navigate", url=site + "/")
    clicked = await ok(registry, "browser.click", text="Rebuild")
    assert "Clicked the element with text 'Rebuild'" in clicked.output
    assert "Rebuild requested" in (await ok(registry, "browser.text", selector="#status")).output

    followed = await ok(registry, "browser.click", selector="a")
    assert followed.output.endswith(f"now at {site}/second")
    assert "All 42 checks passed" in (await ok(registry, "browser.text")).output


async def test_type_into_a_form_and_submit(registry: ToolRegistry, site: str) -> None:
    await ok(registry, "browser.navigate", url=site + "/form")
    typed = await ok(registry, "browser.type", selector="#q", text="green <builds>", submit=True)
    assert typed.output.startswith("Typed 14 characters into the field with selector '#q'")
    assert "/result?q=green" in typed.output
    text = await ok(registry, "browser.text")
    assert "You searched for: green <builds>" in text.output


async def test_type_without_submit_only_fills(
    registry: ToolRegistry, manager: BrowserManager, site: str
) -> None:
    await ok(registry, "browser.navigate", url=site + "/form")
    typed = await ok(registry, "browser.type", selector="#q", text="draft")
    assert typed.output == "Typed 5 characters into the field with selector '#q'"

    async def value(page: Any) -> str:
        return str(await page.input_value("#q"))

    assert await manager.run(value) == "draft"
    assert (await ok(registry, "browser.text")).output.startswith(f"URL: {site}/form\n")


async def test_screenshot_is_a_png_of_the_page(registry: ToolRegistry, site: str) -> None:
    await ok(registry, "browser.navigate", url=site + "/red")
    shot = await ok(registry, "browser.screenshot")
    [picture] = shot.attachments
    assert picture.mime_type == "image/png"
    assert picture.data is not None
    image = Image.open(io.BytesIO(base64.b64decode(picture.data)))
    assert image.format == "PNG"
    assert image.size == (1280, 720)
    rgb = image.convert("RGB")
    assert rgb.getpixel((10, 10)) == RED
    assert rgb.getpixel((390, 290)) == RED
    assert rgb.getpixel((410, 100)) == WHITE
    assert rgb.getpixel((100, 310)) == WHITE
    assert shot.output.startswith(f"Screenshot of {site}/red (")

    whole = await ok(registry, "browser.screenshot", full_page=True)
    assert whole.attachments[0].data is not None
    tall = Image.open(io.BytesIO(base64.b64decode(whole.attachments[0].data)))
    assert tall.size[0] == 1280
    assert tall.size[1] >= 3300


async def test_long_text_is_cut_in_the_middle(manager: BrowserManager, site: str) -> None:
    manager.settings.max_text_chars = 1000
    registry = ToolRegistry(make_browser_tools(manager.settings, lambda: manager))
    await ok(registry, "browser.navigate", url=site + "/long")
    text = (await ok(registry, "browser.text")).output
    body = text.split("\n\n", 1)[1]
    assert body.startswith("START pistachio")
    assert body.endswith("pistachio END")
    assert "characters truncated ...]" in body
    assert len(body) < 1100


async def test_unreachable_site_is_a_clear_error(registry: ToolRegistry) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await call(registry, "browser.navigate", url=f"http://127.0.0.1:{port}/")
    assert result.is_error
    assert result.output == (
        f"cannot open http://127.0.0.1:{port}/: cannot connect to 127.0.0.1:{port}: "
        "connection refused"
    )
    assert "Call log" not in result.output


async def test_navigation_timeout_is_a_clear_error(manager: BrowserManager, site: str) -> None:
    async def url_of(page: Any) -> str:
        return str(page.url)

    # Launch with the long timeout (a busy machine may need more than 1 s to start Chromium);
    # the page of the session below is made afterwards, with the short one.
    await manager.run(url_of, session="warm-up")
    manager.settings.timeout = 1
    registry = ToolRegistry(make_browser_tools(manager.settings, lambda: manager))
    result = await call(registry, "browser.navigate", url=site + "/slow")
    assert result.is_error
    assert result.output.startswith(f"cannot open {site}/slow: timed out (Timeout 1000ms")


async def test_missing_elements_are_clear_errors(registry: ToolRegistry, site: str) -> None:
    await ok(registry, "browser.navigate", url=site + "/")
    cases = [
        ("browser.click", {"selector": "#nope"}, "selector '#nope'"),
        ("browser.click", {"text": "No such button"}, "text 'No such button'"),
        ("browser.type", {"selector": "#nope", "text": "x"}, "selector '#nope'"),
        ("browser.text", {"selector": ".nope"}, "selector '.nope'"),
    ]
    for name, arguments, described in cases:
        result = await call(registry, name, **arguments)
        assert result.is_error, name
        assert result.output.endswith(f"no element on the page matches {described} (waited 1 s)"), (
            result.output
        )


async def test_bad_arguments_are_clear_errors(registry: ToolRegistry, site: str) -> None:
    both = await call(registry, "browser.click", selector="a", text="Details")
    assert both.output == "give exactly one of `selector` (CSS) and `text` (visible text)"
    neither = await call(registry, "browser.click")
    assert neither.is_error
    scheme = await call(registry, "browser.navigate", url="javascript:alert(1)")
    assert scheme.is_error
    assert "blocked: the scheme 'javascript' is not allowed" in scheme.output
    empty = await call(registry, "browser.navigate", url="  ")
    assert empty.output.startswith("give the address to open")
    await ok(registry, "browser.navigate", url=site + "/")
    invalid = await call(registry, "browser.click", selector="##")
    assert invalid.is_error
    assert invalid.output.startswith("cannot click selector '##': ")
    assert "Traceback" not in invalid.output


async def test_address_without_scheme_gets_https(registry: ToolRegistry) -> None:
    result = await call(registry, "browser.navigate", url="127.0.0.1:9")
    assert result.output.startswith("cannot open https://127.0.0.1:9: ")


async def test_crashed_browser_is_relaunched(
    registry: ToolRegistry,
    manager: BrowserManager,
    site: str,
    chromium_pids: Callable[[], list[int]],
) -> None:
    await ok(registry, "browser.navigate", url=site + "/")
    pids = chromium_pids()
    assert pids, "the browser should run as a child of this process"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    reopened = await ok(registry, "browser.navigate", url=site + "/second")
    assert reopened.output.startswith(f"Opened {site}/second (HTTP 200)")
    assert manager.launches == 2
    assert "All 42 checks passed" in (await ok(registry, "browser.text")).output

    for pid in chromium_pids():
        os.kill(pid, signal.SIGKILL)
    lost = await call(registry, "browser.click", selector="a")
    assert lost.is_error
    assert lost.output == CRASHED
    assert (await ok(registry, "browser.text")).output.startswith("URL: about:blank\n")


async def test_idle_pages_and_then_the_browser_are_closed(
    site: str,
    chromium_pids: Callable[[], list[int]],
    wait_until: Callable[[Callable[[], bool]], Awaitable[None]],
) -> None:
    manager = BrowserManager(
        BrowserSettings(idle_close=0.2, element_timeout=1, allow_hosts=SITE_HOSTS)
    )
    registry = ToolRegistry(make_browser_tools(manager.settings, lambda: manager))
    try:
        await ok(registry, "browser.navigate", url=site + "/")
        assert manager.sessions == ["shared"]
        assert manager.running
        await wait_until(lambda: not manager.sessions and not manager.running)
        await wait_until(lambda: not chromium_pids())
        gone = await call(registry, "browser.text")
        assert gone.is_error
        assert gone.output.startswith("the page was closed after 0.2 s without use")
        await ok(registry, "browser.navigate", url=site + "/second")
        assert manager.launches == 2
    finally:
        await manager.close()
    await wait_until(lambda: not chromium_pids())


async def test_missing_executable_is_a_clear_error() -> None:
    manager = BrowserManager(BrowserSettings(executable="/nonexistent/chrome"))
    registry = ToolRegistry(make_browser_tools(manager.settings, lambda: manager))
    try:
        result = await call(registry, "browser.navigate", url="about:blank")
    finally:
        await manager.close()
    assert result.is_error
    assert result.output.startswith("cannot start the browser /nonexistent/chrome: ")


async def test_with_a_display_the_browser_window_is_shown(site: str, virtual_display: str) -> None:
    manager = BrowserManager(
        BrowserSettings(element_timeout=1, display=virtual_display, allow_hosts=SITE_HOSTS)
    )
    try:
        assert not manager.settings.is_headless
        registry = ToolRegistry(make_browser_tools(manager.settings, lambda: manager))
        await ok(registry, "browser.navigate", url=site + "/red")
        windows = await asyncio.to_thread(
            subprocess.run,
            ["xdotool", "search", "--onlyvisible", "--class", "chromium"],
            env={**os.environ, "DISPLAY": virtual_display},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert windows.stdout.split(), "a visible Chromium window on the virtual screen"
        shot = await ok(registry, "browser.screenshot")
        assert shot.attachments[0].data
    finally:
        await manager.close()
