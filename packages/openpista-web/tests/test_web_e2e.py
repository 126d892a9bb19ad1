"""End to end: a real ``openpista start`` with the web channel, driven by headless Chromium
(Debian's, through Playwright): sign in by link, chat with streamed answers, reload, survive a
daemon restart, send an image. A screenshot is kept as a test artifact."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista_testing.cli import Cli, emulator_config
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port
from openpista_web.testing import CHROMIUM, CHROMIUM_FLAGS

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-4hQ9xWm2"
DEADLINE = 30_000  # ms, for the browser's waits


def healthy(port: int) -> bool:
    """Whether the web channel on ``port`` answers its health check."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def start_daemon(
    llm_emulator: LlmEmulator, tmp_path: Path, port: int
) -> Iterator[Callable[[], Daemon]]:
    """Start ``openpista start --no-terminal -v`` with the web channel on ``port`` (again
    after a stop: the same home); returns once it answers. None may log the token."""
    cli = Cli.isolated(tmp_path, llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web"
    cli.write_config(
        emulator_config(llm_emulator, tmp_path)
        + f'\n[channels.web]\nenabled = true\nport = {port}\ntoken = "{TOKEN}"\n'
    )
    started: list[Daemon] = []

    def start() -> Daemon:
        daemon = Daemon(cli, "--no-terminal", "-v")
        started.append(daemon)
        daemon.wait_until(lambda: healthy(port))
        return daemon

    yield start
    for daemon in started:
        try:
            daemon.stop()
        finally:
            daemon.kill()
    for daemon in started:
        assert TOKEN not in daemon.output()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 390, "height": 780},  # a phone
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def save_artifact(page: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    target = os.environ.get("OPENPISTA_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / name)
    return shot


def test_chat_in_a_real_browser(
    start_daemon: Callable[[], Daemon],
    port: int,
    page: Any,
    llm_emulator: LlmEmulator,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    daemon = start_daemon()
    base = f"http://127.0.0.1:{port}/"
    page.goto(base + f"#token={TOKEN}")
    status = page.locator("#status")
    expect(status).to_have_text("online", timeout=DEADLINE)
    assert TOKEN not in page.url  # the link's token left the address bar
    assert page.evaluate("localStorage.getItem('openpista.token')") == TOKEN
    client_id = page.evaluate("localStorage.getItem('openpista.client')")
    # The session id arrives in the welcome frame, which may follow the "online" status.
    page.wait_for_function("document.body.dataset.session", timeout=DEADLINE)
    session = page.evaluate("document.body.dataset.session")
    assert session

    # A streamed answer is rendered piece by piece.
    page.evaluate(
        """() => { window.updates = 0;
        new MutationObserver(() => window.updates++).observe(document.getElementById('log'),
            {subtree: true, childList: true, characterData: true}); }"""
    )
    llm_emulator.reply_text("Streaming works in the browser, piece by piece.", chunk_size=2)
    page.locator("#input").fill("hello from chromium")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.bot").last
    expect(answer).to_have_text("Streaming works in the browser, piece by piece.", timeout=DEADLINE)
    assert page.evaluate("window.updates") > 5
    expect(page.locator(".msg.user")).to_have_text("hello from chromium")

    # A reload keeps the browser's id, its session and the conversation.
    page.reload()
    expect(status).to_have_text("online", timeout=DEADLINE)
    assert page.evaluate("localStorage.getItem('openpista.client')") == client_id
    assert page.evaluate("document.body.dataset.session") == session
    expect(page.locator(".msg.user")).to_have_text("hello from chromium")
    expect(page.locator(".msg.bot")).to_have_text("Streaming works in the browser, piece by piece.")

    # The daemon goes away: the page says so, then reconnects on its own.
    daemon.stop()
    expect(status).to_have_attribute("data-state", "offline", timeout=DEADLINE)
    start_daemon()
    expect(status).to_have_text("online", timeout=DEADLINE)
    llm_emulator.reply(lambda body: f"back with {len(body['messages'])} messages")
    page.locator("#input").fill("are you back?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.bot").last).to_have_text("back with 4 messages", timeout=DEADLINE)
    assert page.evaluate("document.body.dataset.session") == session

    # An image, picked with the file input, reaches the LLM and shows in the chat.
    picture = tmp_path / "dot.png"
    picture.write_bytes(
        (Path(__file__).parents[1] / "src/openpista_web/static/icon-192.png").read_bytes()
    )
    page.set_input_files("#attach", str(picture))
    expect(page.locator("#previews img")).to_have_count(1, timeout=DEADLINE)
    llm_emulator.reply_text("A green speech bubble.")
    page.locator("#input").fill("what is this?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.bot").last).to_have_text("A green speech bubble.", timeout=DEADLINE)
    expect(page.locator(".msg.user img")).to_have_count(1)
    sent = str(llm_emulator.requests[-1].json)
    assert base64.b64encode(picture.read_bytes()).decode()[:200] in sent

    # Slash commands answer in the page.
    page.locator("#input").fill("/session")
    page.keyboard.press("Enter")
    expect(page.locator(".note").last).to_have_text(f"session: {session}", timeout=DEADLINE)

    shot = save_artifact(page, tmp_path, "web-chat.png")
    assert shot.stat().st_size > 1000


def test_wrong_token_asks_to_sign_in(
    start_daemon: Callable[[], Daemon], port: int, page: Any
) -> None:
    from playwright.sync_api import expect

    start_daemon()
    page.goto(f"http://127.0.0.1:{port}/#token=not-the-token")
    expect(page.locator("#status")).to_have_attribute("data-state", "signed-out", timeout=DEADLINE)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("refused")
    page.locator("#token").fill(TOKEN)
    page.locator("#login button").click()
    expect(page.locator("#status")).to_have_text("online", timeout=DEADLINE)
