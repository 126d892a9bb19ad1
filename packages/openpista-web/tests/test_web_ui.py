"""The browser client in real Chromium against a real server: markdown, the working
indicator, following a streamed answer, layout, approvals, refusals, icons.

The server is the web adapter in this process, so a test can send any answer, hostile ones
included, exactly as the gateway would. Screenshots go to ``OPENPISTA_ARTIFACTS`` if set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.channels import CommandReply
from openpista.models import (
    Answer,
    ApprovalPrompt,
    ApprovalRequest,
    Attachment,
    Outbound,
    TextChunk,
    ToolCall,
    ToolProgress,
    ToolResult,
)
from openpista_web.testing import CHROMIUM, CHROMIUM_FLAGS

TOKEN = "test-token-Zq8vN3kL0pXr"
WAIT = 20_000  # ms, for the browser's waits
PHONE = {"width": 390, "height": 780}
DESKTOP = {"width": 1280, "height": 800}
Serve = Callable[..., Awaitable[Any]]

# Everything the markdown renderer may create inside a message bubble.
ALLOWED = {
    "P", "BR", "H3", "H4", "H5", "H6", "STRONG", "EM", "DEL", "CODE", "PRE", "A", "UL", "OL",
    "LI", "BLOCKQUOTE", "HR", "DIV", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD", "BUTTON",
    "svg", "path",
}  # fmt: skip


class Chat:
    """One browser tab signed in to a served web adapter."""

    def __init__(self, page: Any, served: Any) -> None:
        self.page, self.served = page, served
        self.client = ""

    async def open(self) -> Chat:
        from playwright.async_api import expect

        await self.page.goto(f"{self.served.http}/#token={TOKEN}")
        await expect(self.page.locator("#status")).to_have_text("online", timeout=WAIT)
        self.client = await self.page.evaluate("localStorage.getItem('openpista.client')")
        return self

    async def send(self, message: Outbound) -> None:
        """Deliver ``message`` to this browser, as the gateway does."""
        channel = {"channel_id": f"web:{self.client}"}
        await self.served.adapter.send(message.model_copy(update=channel))

    async def answer(self, text: str, **fields: Any) -> None:
        await self.send(Answer(text=text, **fields))

    async def chunk(self, text: str) -> None:
        await self.send(TextChunk(text=text))

    async def tool(self, call: ToolCall, result: ToolResult | None = None) -> None:
        await self.send(ToolProgress(call=call, result=result))

    async def say(self, text: str) -> None:
        """Type ``text`` in the composer and send it; a message (not a command) is awaited
        on the server's side."""
        await self.page.locator("#input").fill(text)
        await self.page.keyboard.press("Enter")
        if not text.startswith("/"):
            assert (await self.served.event()).text == text

    async def shot(self, tmp_path: Path, name: str) -> Path:
        return await screenshot(self.page, tmp_path, name)


async def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """A screenshot (looked at while developing; kept as an artifact)."""
    path = tmp_path / name
    await page.screenshot(path=str(path))
    target = os.environ.get("OPENPISTA_ARTIFACTS")
    if target:
        os.makedirs(target, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def chat(browser: Any, serve_web: Serve) -> Callable[..., Awaitable[Chat]]:
    """``await chat(viewport=..., **web_options)``: a signed-in tab on a fresh server."""

    async def start(viewport: dict[str, int] = PHONE, **options: Any) -> Chat:
        served = await serve_web(**options)
        context = await browser.new_context(viewport=viewport)
        await context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = await context.new_page()
        # Anything that executes sets a flag instead of blocking in a dialog.
        await page.add_init_script("window.pwned = 0; window.alert = () => { window.pwned++; };")
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        tab = Chat(page, served)
        tab.errors = errors  # type: ignore[attr-defined]
        return await tab.open()

    return start


HOSTILE = """# Results

Some **bold**, *italic*, ***both***, **bold with *italic* inside**, ~~gone~~ and `a <b> c`.
Entities: &lt;script&gt;window.pwned++&lt;/script&gt; &amp; &#x3C;i&#x3E; stay text.
<script>window.pwned++</script>
<img src="x" onerror="window.pwned++"> <svg onload="window.pwned++"></svg>
<a href="javascript:window.pwned++">raw html link</a>
[click me](javascript:window.pwned++) [or me](JaVaScRiPt:alert(1)) [data](data:text/html,x)
[relative](/etc/passwd) [fine](https://example.org/a_(b)?q=1) <https://example.org/auto>
![tracker](http://127.0.0.1:1/pixel.png) [x](vbscript:msgbox) mail <mailto:me@example.org>
**unclosed *emphasis and `code

> a quote with **bold**
> > nested <b>quote</b>

- one
- two with [link](http://example.org/)
  - nested *item*
1. first
2. second

| name | value |
| --- | ---: |
| <img src=x onerror=window.pwned++> | `1` |

---
```js
alert("in a fence"); </code><script>window.pwned++</script>
```
```
unterminated fence <img src=x onerror=window.pwned++>"""


async def test_hostile_markdown_renders_safely_and_nothing_executes(
    chat: Callable[..., Awaitable[Chat]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    tab = await chat()
    page = tab.page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await tab.answer(HOSTILE)
    bubble = page.locator(".msg.bot").last
    await expect(bubble.locator("h3")).to_have_text("Results", timeout=WAIT)
    await page.wait_for_timeout(300)  # give any injected handler the chance to run
    assert await page.evaluate("window.pwned") == 0
    assert tab.errors == []  # type: ignore[attr-defined]
    report = await bubble.evaluate(
        """(b) => ({
        tags: [...new Set([...b.querySelectorAll('*')].map((e) => e.tagName))],
        handlers: [...b.querySelectorAll('*')].flatMap((e) =>
            [...e.attributes].map((a) => a.name).filter((n) => n.startsWith('on'))),
        links: [...b.querySelectorAll('a')].map((a) =>
            [a.textContent, a.getAttribute('href'), a.target, a.rel]),
        strong: [...b.querySelectorAll('strong')].map((e) => e.textContent),
        em: [...b.querySelectorAll('em')].map((e) => e.textContent),
        nested: [...b.querySelectorAll('strong > em, em > strong')].map((e) => e.textContent),
        code: [...b.querySelectorAll(':not(pre) > code')].map((e) => e.textContent),
        pres: [...b.querySelectorAll('pre')].map((e) => e.textContent),
        quotes: b.querySelectorAll('blockquote blockquote').length,
        items: [...b.querySelectorAll('li')].map((e) => e.firstChild.textContent),
        cells: [...b.querySelectorAll('td')].map((e) => e.textContent),
        text: b.textContent,
        copy: b.querySelectorAll('.code > button.copy').length,
    })"""
    )
    assert set(report["tags"]) <= ALLOWED, set(report["tags"]) - ALLOWED
    assert report["handlers"] == []
    hrefs = {text: href for text, href, _, _ in report["links"]}
    assert hrefs == {
        "fine": "https://example.org/a_(b)?q=1",
        "https://example.org/auto": "https://example.org/auto",
        "tracker": "http://127.0.0.1:1/pixel.png",  # an image becomes a link, never loaded
        "mailto:me@example.org": "mailto:me@example.org",
        "link": "http://example.org/",
    }
    assert all(
        target == "_blank" and rel == "noopener noreferrer" for *_, target, rel in report["links"]
    )
    for shown in ("click me", "or me", "data", "relative", "raw html link"):
        assert shown in report["text"]  # refused links keep their text, not their target
    assert "javascript:" not in "".join(href for _, href, _, _ in report["links"])
    assert "bold" in report["strong"]
    assert "both" in report["em"]
    assert "italic" in report["nested"]
    assert "both" in report["nested"]
    assert "gone" in await bubble.locator("del").all_inner_texts()
    assert "a <b> c" in report["code"]
    assert "<script>window.pwned++</script>" in report["text"]  # raw HTML and entities: text
    assert "<i>" in report["text"]
    assert "**unclosed *emphasis and `code" in report["text"]
    assert report["quotes"] == 1
    assert report["items"][:2] == ["one", "two with "]
    assert "nested " in report["items"]
    assert report["cells"] == ["<img src=x onerror=window.pwned++>", "1"]
    assert report["pres"] == [
        'alert("in a fence"); </code><script>window.pwned++</script>',
        "unterminated fence <img src=x onerror=window.pwned++>",
    ]
    assert report["copy"] == 2
    assert not [url for url in requested if "pixel" in url]
    assert await page.locator("#log img").count() == 0

    # The copy button puts the code itself on the clipboard.
    await bubble.locator(".code button.copy").first.click()
    await expect(bubble.locator(".code button.copy").first).to_have_class("copy done")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == 'alert("in a fence"); </code><script>window.pwned++</script>'
    # Clicking where a refused link was does nothing either.
    await bubble.get_by_text("click me").click()
    assert await page.evaluate("window.pwned") == 0
    await tab.shot(tmp_path, "web-markdown-phone.png")


async def test_a_working_indicator_shows_from_send_until_the_answer_starts(
    chat: Callable[..., Awaitable[Chat]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    tab = await chat()
    working = tab.page.locator("#log .working")
    await expect(working).to_have_count(0)
    await tab.say("take your time")
    await expect(working).to_be_visible()
    await expect(working).to_have_attribute("role", "status")
    await tab.shot(tmp_path, "web-working-phone.png")
    await tab.chunk("First")
    await expect(working).to_have_count(0)
    await expect(tab.page.locator(".msg.bot.streaming")).to_have_text("First")
    # A tool step means the agent works again until the next words arrive.
    ls = ToolCall(id="c1", name="system.run", arguments={"command": "ls"})
    await tab.tool(ls)
    await expect(working).to_be_visible()
    await expect(tab.page.locator("#log > :last-child")).to_have_class("working")
    await tab.tool(ls, ToolResult(call_id="c1", name="system.run", output="a\nb"))
    await expect(working).to_be_visible()
    await tab.answer("Done.")
    await expect(working).to_have_count(0)
    await expect(tab.page.locator(".msg.bot").last).to_have_text("Done.")
    # Commands answer at once: no indicator for them.
    tab.served.ctx.commands["/help"] = CommandReply("Commands:\n  /clear  a new session")
    await tab.say("/help")
    await expect(tab.page.locator(".note").last).to_contain_text("/clear")
    await expect(working).to_have_count(0)


async def log_position(page: Any) -> dict[str, float]:
    return await page.evaluate(
        """() => { const l = document.getElementById('log');
        return {top: l.scrollTop, gap: l.scrollHeight - l.scrollTop - l.clientHeight}; }"""
    )


async def test_the_view_follows_a_streamed_answer_unless_the_user_scrolled_up(
    chat: Callable[..., Awaitable[Chat]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    tab = await chat()
    page = tab.page
    for number in range(12):
        await tab.answer(f"earlier answer {number}\n\nwith a second paragraph")
    await tab.say("stream a long one")
    for line in range(60):
        await tab.chunk(f"line {line} of a long streamed answer\n\n")
        if line % 15 == 14:
            await expect(page.locator(".msg.streaming")).to_contain_text(f"line {line} ")
            assert (await log_position(page))["gap"] < 48, f"fell behind at line {line}"
    # The user scrolls up to read: more text arrives, the view stays where they put it.
    await page.locator("#log").hover()
    await page.mouse.wheel(0, -600)
    await page.wait_for_function(
        "() => { const l = document.getElementById('log');"
        " return l.scrollHeight - l.scrollTop - l.clientHeight > 400; }",
        timeout=WAIT,
    )
    held = (await log_position(page))["top"]
    jump = page.locator("button.jump")
    await expect(jump).to_be_visible()
    for line in range(60, 90):
        await tab.chunk(f"line {line} arrives while reading\n\n")
    await expect(page.locator(".msg.streaming")).to_contain_text("line 89 ")
    assert (await log_position(page))["top"] == held
    await tab.shot(tmp_path, "web-scrolled-up-phone.png")
    # Back to the newest on request; from then on it follows again.
    await jump.click()
    await expect(jump).to_be_hidden()
    await tab.chunk("the end")
    await tab.answer("(final)")
    await expect(page.locator(".msg.bot").last).to_have_text("(final)")
    assert (await log_position(page))["gap"] < 48


COLUMN = 48 * 16  # px: the centred column of wide screens (48rem)


async def box(page: Any, selector: str) -> dict[str, float]:
    found = await page.locator(selector).last.bounding_box()
    assert found is not None, selector
    return dict(found)


async def test_desktop_uses_a_centred_column_and_a_phone_the_whole_width(
    chat: Callable[..., Awaitable[Chat]], tmp_path: Path
) -> None:
    for viewport in (DESKTOP, PHONE):
        tab = await chat(viewport=viewport)
        await tab.say("a question of mine with `code`")
        await tab.answer("An answer that is long enough to fill a line. " * 6)
        width = viewport["width"]
        composer = await box(tab.page, "#composer .row")
        answer = await box(tab.page, ".msg.bot")
        mine = await box(tab.page, ".msg.user")
        if width > COLUMN:
            assert composer["width"] <= COLUMN
            left, right = composer["x"], width - composer["x"] - composer["width"]
            assert abs(left - right) <= 2  # centred
            assert answer["x"] >= left  # the conversation keeps to the column
            assert mine["x"] + mine["width"] <= width - right + 1
        else:
            assert composer["width"] >= width - 20  # a phone uses its whole width
        name = "desktop" if width > COLUMN else "phone"
        await tab.shot(tmp_path, f"web-layout-{name}.png")


def contrast(foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two ``rgb(r, g, b)`` colours."""

    def luminance(colour: str) -> float:
        channels = [float(c) / 255 for c in colour[colour.index("(") + 1 : -1].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


async def test_code_in_my_own_bubbles_is_readable(chat: Callable[..., Awaitable[Chat]]) -> None:
    tab = await chat()
    await tab.say("inline `ls -la` and a block:\n```\ncat notes.txt\n```")
    # Each code element's text colour against what is really behind it: its own (translucent)
    # background composited over the bubble's.
    pairs = await tab.page.evaluate(
        """() => {
        const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
        const bubble = rgb(getComputedStyle(document.querySelector('.msg.user')).backgroundColor);
        return [...document.querySelectorAll('.msg.user code, .msg.user pre')].map((e) => {
            const s = getComputedStyle(e);
            const [r, g, b, a = 1] = rgb(s.backgroundColor);
            const mix = [r, g, b].map((c, i) => Math.round(c * a + bubble[i] * (1 - a)));
            return [s.color, `rgb(${mix.join(', ')})`];
        });
    }"""
    )
    assert len(pairs) == 3
    for foreground, background in pairs:
        assert contrast(foreground, background) >= 4.5, (foreground, background)


async def test_an_approval_says_plainly_what_runs_and_why_and_confirms_once(
    chat: Callable[..., Awaitable[Chat]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    tab = await chat()
    await tab.say("clean up my downloads")
    request = ApprovalRequest(
        id="a1b2c3d4",
        tool="system.run",
        arguments={"command": "rm -r ~/Downloads/old"},
        reason="default for remote channels (policy.remote)",
        timeout=120,
    )
    await tab.send(ApprovalPrompt(request=request))
    card = tab.page.locator(".approval")
    await expect(card).to_contain_text("The agent wants to run this command on your computer")
    await expect(card.locator("pre")).to_have_text("rm -r ~/Downloads/old")
    await expect(card).to_contain_text("remote chat")
    await expect(card).to_contain_text("No answer within 2 minutes counts as no.")
    shown = await card.inner_text()
    for internal in ("policy.remote", "system.run", "a1b2c3d4", "/approve"):
        assert internal not in shown
    await expect(tab.page.locator("#log .working")).to_have_count(0)  # waiting for you now
    await tab.shot(tmp_path, "web-approval-phone.png")
    await card.get_by_role("button", name="Allow").click()
    assert (await tab.served.event()).text == "/approve a1b2c3d4"  # no broker: as text
    await expect(card.locator(".done")).to_have_text("Sending your answer…")
    await expect(card.get_by_role("button", name="Allow")).to_be_disabled()
    await expect(card.get_by_role("button", name="Deny")).to_be_disabled()
    await tab.served.adapter.hub.publish(
        tab.client, "decision", id="a1b2c3d4", approve=True, ok=True, text="✅ approved"
    )
    await expect(card.locator(".done")).to_have_text("Allowed: it runs now.")
    await expect(tab.page.locator("#log .working")).to_be_visible()
    confirmations = await tab.page.locator("#log").inner_text()
    assert confirmations.count("Allowed") == 1
    assert "approved" not in confirmations.lower()


async def test_a_rate_limited_browser_is_told_why_and_when_to_retry(
    chat: Callable[..., Awaitable[Chat]], browser: Any, serve_web: Serve, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    served = await serve_web(max_auth_failures=3, auth_failure_window=600)
    for _ in range(3):
        served.adapter.auth_limiter.failed("127.0.0.1")
    page = await (await browser.new_context(viewport=PHONE)).new_page()
    await page.goto(f"{served.http}/#token={TOKEN}")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "limited", timeout=WAIT)
    await expect(status).to_have_text("refused · retry in 10 min")  # the server's Retry-After
    note = page.locator(".note.error")
    await expect(note).to_contain_text("too many wrong tokens")
    await expect(note).to_contain_text("tries again on its own at")
    await expect(note).to_contain_text("(in 10 min)")
    await expect(page.locator("#login")).to_be_hidden()  # the token is not what was wrong
    await screenshot(page, tmp_path, "web-limited-phone.png")


# Symbols, arrows, dingbats and emoji: a machine without an emoji font draws boxes for these.
GLYPHS = r"[\u2190-\u21ff\u2300-\u23ff\u2460-\u27bf\u2900-\u2bff\ufe0f\u{1f000}-\u{1faff}]"


async def test_the_interface_draws_its_icons_without_emoji_glyphs(
    chat: Callable[..., Awaitable[Chat]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    tab = await chat()
    page = tab.page
    await tab.say("show me everything")
    ls = ToolCall(id="c1", name="system.run", arguments={"command": "ls"})
    await tab.tool(ls)
    await tab.tool(ls, ToolResult(call_id="c1", name="system.run", output="a.txt"))
    failed = ToolResult(call_id="c2", name="system.run", output="nope", is_error=True)
    await tab.tool(ToolCall(id="c2", name="system.run"), failed)
    report = Attachment(name="report.pdf", mime_type="application/pdf", path="/x/report.pdf")
    await tab.answer("Here it is.", attachments=[report])
    await tab.answer("❌ the provider is down", is_error=True)
    await tab.served.adapter.hub.publish(tab.client, "error", message="unknown frame type 'x'")
    await expect(page.locator(".note.error")).to_have_count(1)
    request = ApprovalRequest(id="r1", tool="browser.open", arguments={"url": "https://a.b"})
    await tab.send(ApprovalPrompt(request=request))
    await expect(page.locator(".approval")).to_be_visible()
    text = await page.evaluate("document.body.innerText")
    found = await page.evaluate("([t, p]) => t.match(new RegExp(p, 'gu'))", [text, GLYPHS])
    assert found is None, found
    icons = await page.evaluate(
        "[...document.querySelectorAll('svg.i')].map((s) =>"
        " s.parentElement.closest('[class]').getAttribute('class'))"
    )
    for place in ("icon", "tool", "tool failed", "file", "msg bot error", "note error", "ask"):
        assert any(place in owner for owner in icons), (place, icons)
    # Every icon on screen really draws something (a path with a size).
    sizes = await page.evaluate(
        "[...document.querySelectorAll('svg.i')].filter((s) => s.checkVisibility())"
        ".map((s) => s.getBBox().width)"
    )
    assert len(sizes) >= 8
    assert all(width > 0 for width in sizes)
    await screenshot(page, tmp_path, "web-icons-phone.png")


async def test_the_workers_a_chat_started_show_in_its_conversation(
    chat: Callable[..., Awaitable[Chat]],
) -> None:
    from playwright.async_api import expect

    from openpista.worker_service import worker_feed

    tab = await chat()
    feed = worker_feed()

    def event(kind: str, task_id: str = "3f2a9c0d1e4b5a67", **fields: Any) -> dict[str, Any]:
        chat_id = f"web:{tab.client}"
        return {"v": 1, "event": kind, "task_id": task_id, "channel_id": chat_id, **fields}

    feed.publish(event("created"))
    line = tab.page.locator(".worker").first
    await expect(line).to_have_text("worker 3f2a9c0d · created", timeout=WAIT)
    feed.publish(event("progress", log=["step one", "step <b>two</b>"], percent=40.4))
    await expect(line).to_have_text("worker 3f2a9c0d · progress · 40% · step <b>two</b>")
    # Other chats' workers are not shown here.
    feed.publish({**event("progress", log=["not mine"]), "channel_id": "telegram:1"})
    feed.publish({**event("created", "ffff0000ffff0000"), "channel_id": "web:someone-else"})
    feed.publish(event("finished", exit_code=0))
    feed.publish(event("ended"))  # the credential is revoked after the final report
    feed.publish(event("failed", "0123456789abcdef", exit_code=3))
    failed = tab.page.locator(".worker.failed")
    await expect(failed).to_have_text("worker 01234567 · failed · exit 3", timeout=WAIT)
    await expect(line).to_have_text("worker 3f2a9c0d · finished · exit 0")
    assert await tab.page.locator(".worker").count() == 2
    text = await tab.page.locator("#log").inner_text()
    assert "not mine" not in text
    assert "ffff0000" not in text
    assert tab.errors == []  # type: ignore[attr-defined]
