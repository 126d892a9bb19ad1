"""End to end: the LLM emulator asks for browser tools, the agent answers with the page."""

from __future__ import annotations

import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.config import Settings
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_browser.settings import BrowserSettings
from openpista_testing.cli import Cli, emulator_config
from openpista_testing.emulator import LlmEmulator

BROWSER_SECTION = '\n[tools.browser]\nelement_timeout = 2\nallow_hosts = ["127.0.0.1"]\n'


def last_tool_output(body: dict[str, Any]) -> str:
    """What the agent reported from the last tool call (an OpenAI chat request)."""
    return str([m for m in body["messages"] if m["role"] == "tool"][-1]["content"])


def answer_with_page(body: dict[str, Any]) -> str:
    return "The page says:\n" + last_tool_output(body)


def settings_for(emulator: LlmEmulator, home: Path, extra: str = BROWSER_SECTION) -> Settings:
    return Settings(**tomllib.loads(emulator_config(emulator, home) + extra))


def browser_host() -> PluginHost:
    return PluginHost.load(environ={"OPENPISTA_LOAD_PLUGINS": "browser"})


@pytest.mark.e2e
def test_run_reads_a_page_with_navigate_and_text(
    llm_emulator: LlmEmulator, site: str, tmp_path: Path
) -> None:
    cli = Cli.isolated(tmp_path / "home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "browser"
    cli.write_config(emulator_config(llm_emulator, cli.home) + BROWSER_SECTION)
    llm_emulator.reply_tool_calls([("browser_navigate", {"url": site + "/"})])
    llm_emulator.reply_tool_calls([("browser_text", {"selector": "#status"})])
    llm_emulator.reply(answer_with_page)

    done = cli("run", "-e", "open the status page and tell me if the build is green")

    assert done.returncode == 0, done.stderr
    assert "The page says:" in done.stdout
    assert "The build is green" in done.stdout
    assert "⚙ browser.navigate" in done.stderr
    offered = [t["function"]["name"] for t in llm_emulator.requests[0].json["tools"]]
    assert {"browser_navigate", "browser_click", "browser_type", "browser_screenshot"} <= set(
        offered
    )
    assert "(HTTP 200); title: 'Build status'" in last_tool_output(llm_emulator.requests[1].json)


async def test_each_session_has_its_own_page_and_closing_quits_the_browser(
    llm_emulator: LlmEmulator,
    site: str,
    tmp_path: Path,
    chromium_pids: Callable[[], list[int]],
    wait_until: Callable[[Callable[[], bool]], Awaitable[None]],
) -> None:
    runtime = await Runtime.open(settings_for(llm_emulator, tmp_path), browser_host())
    try:
        agent = runtime.agent()
        llm_emulator.reply_tool_calls([("browser_navigate", {"url": site + "/"})])
        llm_emulator.reply_text("opened")
        llm_emulator.reply_tool_calls([("browser_navigate", {"url": site + "/second"})])
        llm_emulator.reply_text("opened")
        llm_emulator.reply_tool_calls([("browser_text", {})])
        llm_emulator.reply(answer_with_page)

        await agent.run_turn("alice", "open the status page")
        await agent.run_turn("bob", "open the details")
        answer = await agent.run_turn("alice", "what does it say?")
    finally:
        await runtime.close()

    assert "The build is green" in answer.text
    assert "All 42 checks passed" not in answer.text
    await wait_until(lambda: not chromium_pids())


async def test_screenshot_reaches_the_answer_as_a_png(
    llm_emulator: LlmEmulator, site: str, tmp_path: Path
) -> None:
    runtime = await Runtime.open(settings_for(llm_emulator, tmp_path), browser_host())
    try:
        llm_emulator.reply_tool_calls([("browser_navigate", {"url": site + "/red"})])
        llm_emulator.reply_tool_calls([("browser_screenshot", {})])
        llm_emulator.reply_text("Here it is.")
        answer = await runtime.agent().run_turn("carol", "show me the red page")
    finally:
        await runtime.close()
    [picture] = answer.attachments
    assert picture.mime_type == "image/png"
    assert picture.data


def test_disabled_tools_are_not_registered(llm_emulator: LlmEmulator, tmp_path: Path) -> None:
    settings = settings_for(llm_emulator, tmp_path, "\n[tools.browser]\nenabled = false\n")
    assert BrowserSettings.from_config(settings) == BrowserSettings(enabled=False)
    host = browser_host()
    from openpista.runtime import build_toolbox

    toolbox = build_toolbox(host, settings)
    assert not [name for name in toolbox.tools.names() if name.startswith("browser.")]
    assert toolbox.problems == []


def test_bad_options_are_reported_against_the_plugin(
    llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    settings = settings_for(
        llm_emulator, tmp_path, '\n[tools.browser]\ntimeout = -1\nspeed = "x"\n'
    )
    from openpista.runtime import build_toolbox

    toolbox = build_toolbox(browser_host(), settings)
    [problem] = toolbox.problems
    assert "[tools.browser]" in problem
    assert "timeout: Input should be greater than 0" in problem
    assert "speed: unknown option" in problem
    assert "browser.navigate" not in toolbox.tools


def test_defaults() -> None:
    defaults = BrowserSettings()
    assert defaults.is_headless
    assert not BrowserSettings(display=":5").is_headless
    assert BrowserSettings(display=":5", headless=True).is_headless
    assert BrowserSettings().find_executable() == "/usr/bin/chromium"


def test_example_config_documents_every_option_with_its_default() -> None:
    example = Path(__file__).resolve().parents[3] / "config.example.toml"
    text = example.read_text()
    section = text[text.index("# --- openpista-browser") : text.index("# --- openpista-desktop")]
    lines = [line[2:] for line in section.splitlines() if line.startswith("# ")]
    keys = ("[", "args", "allow_hosts", *"etdhimv")
    toml = "\n".join(line for line in lines if line.startswith(keys))
    documented = tomllib.loads(toml)["tools"]["browser"]
    assert set(documented) == set(BrowserSettings.model_fields)
    examples = {"executable", "display", "headless"}  # example values; the default is None
    defaults = BrowserSettings().model_dump()
    assert {k: v for k, v in documented.items() if k not in examples} == {
        k: v for k, v in defaults.items() if k not in examples
    }
