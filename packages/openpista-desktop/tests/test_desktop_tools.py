"""The desktop tools on a real virtual X screen (Xvfb) with a real Tk window."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openpista.config import ConfigError, Settings
from openpista.models import ToolCall, ToolResult
from openpista.tools.registry import ToolRegistry
from openpista_desktop.settings import NO_DISPLAY, DesktopSettings
from openpista_desktop.tools import make_desktop_tools

from .conftest import processes_carrying

SCREEN = (1024, 768)  # the Xvfb screen of conftest.xvfb
INPUT_TOOLS = {"mouse.move", "mouse.click", "keyboard.type", "keyboard.press"}


async def call(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    return await registry.dispatch(ToolCall(id="t", name=name, arguments=arguments))


async def ok(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    result = await call(registry, name, **arguments)
    assert not result.is_error, result.output
    return result


def png_of(result: ToolResult) -> Image.Image:
    [picture] = result.attachments
    assert picture.mime_type == "image/png"
    assert picture.data is not None
    image = Image.open(io.BytesIO(base64.b64decode(picture.data)))
    assert image.format == "PNG"
    return image.convert("RGB")


def widget_places(log: list[str]) -> dict[str, list[int]]:
    """The widget centres announced on the Tk window's ``ready`` line."""
    first = log[0]
    assert first.startswith("ready "), first
    places: dict[str, list[int]] = json.loads(first.removeprefix("ready "))
    return places


def wait_for_line(log: Callable[[], list[str]], prefix: str) -> str:
    for _ in range(100):
        found = [line for line in log() if line.startswith(prefix)]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"the Tk window never logged {prefix!r}: {log()}")


async def test_capture_is_a_png_of_the_virtual_screen(
    registry: ToolRegistry, display: str, tk_window: Callable[[], list[str]]
) -> None:
    shot = await ok(registry, "screen.capture")
    image = png_of(shot)
    assert image.size == SCREEN
    assert image.getpixel((5, 5)) == (255, 255, 255)  # the white Tk window at the top left
    assert image.getpixel((SCREEN[0] - 5, SCREEN[1] - 5)) == (0, 0, 0)  # Xvfb's black root
    assert shot.output == (
        f"Screenshot of display {display} (screen 1024x768), region [0, 0, 1024, 768]"
    )

    small = await ok(registry, "screen.capture", max_width=512)
    assert png_of(small).size == (512, 384)
    assert small.output.endswith(", scaled to 512x384")

    part = await ok(registry, "screen.capture", region=[0, 0, 100, 50])
    assert png_of(part).size == (100, 50)


async def test_ocr_reads_the_text_on_screen(
    registry: ToolRegistry, tk_window: Callable[[], list[str]]
) -> None:
    places = widget_places(tk_window())
    x, y = places["label"]
    text = (await ok(registry, "screen.ocr")).output
    assert "OPENPISTA 42" in text
    region = (await ok(registry, "screen.ocr", region=[0, 0, 2 * x, 2 * y])).output
    assert region == "OPENPISTA 42"


async def test_ocr_gives_tesseract_no_secret_of_openpista(
    registry: ToolRegistry,
    tk_window: Callable[[], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tk_window()
    seen = tmp_path / "tesseract-environment"
    wrapper = tmp_path / "bin" / "tesseract"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nenv > {seen}\nexec /usr/bin/tesseract "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak-4711")
    assert "OPENPISTA 42" in (await ok(registry, "screen.ocr")).output
    environment = seen.read_text()
    assert "PATH=" in environment
    assert "sk-must-not-leak-4711" not in environment


async def test_an_unknown_ocr_language_is_one_clear_error(
    display: str, tk_window: Callable[[], list[str]]
) -> None:
    tk_window()
    registry = ToolRegistry(
        make_desktop_tools(DesktopSettings(display=display, ocr_language="xx4711"))
    )
    result = await call(registry, "screen.ocr")
    assert result.is_error
    assert result.output.startswith("OCR failed: ")


def test_the_ocr_language_cannot_smuggle_arguments() -> None:
    with pytest.raises(ValueError, match="ocr_language"):
        DesktopSettings(ocr_language="eng --tessdata-dir /tmp")


async def test_mouse_and_keyboard_drive_a_window(
    registry: ToolRegistry, tk_window: Callable[[], list[str]]
) -> None:
    places = widget_places(tk_window())
    button_x, button_y = places["button"]
    moved = await ok(registry, "mouse.move", x=button_x, y=button_y)
    assert moved.output == f"The mouse pointer is at ({button_x}, {button_y})"
    wait_for_line(tk_window, "hover")

    entry_x, entry_y = places["entry"]
    clicked = await ok(registry, "mouse.click", x=entry_x, y=entry_y)
    assert clicked.output == f"Clicked the left button at ({entry_x}, {entry_y})"
    typed = await ok(registry, "keyboard.type", text="hello desktop")
    assert typed.output == "Typed 13 characters"
    await ok(registry, "keyboard.press", keys="enter")
    assert wait_for_line(tk_window, "submitted") == "submitted hello desktop"

    await ok(registry, "keyboard.press", keys="ctrl+a")  # Tk: to the start of the line
    await ok(registry, "keyboard.type", text="say ")
    await ok(registry, "mouse.click", x=button_x, y=button_y)
    assert wait_for_line(tk_window, "clicked") == "clicked say hello desktop"


async def test_input_errors_are_clear(registry: ToolRegistry) -> None:
    outside = await call(registry, "mouse.move", x=5000, y=10)
    assert outside.output == "(5000, 10) is outside the screen (1024x768)"
    half = await call(registry, "mouse.click", x=10)
    assert half.output == "give both x and y, or neither (click where the pointer is)"
    unknown = await call(registry, "keyboard.press", keys="ctrl+banana")
    assert unknown.output.startswith("unknown key name(s): banana; use names like enter")
    accents = await call(registry, "keyboard.type", text="café ✓")
    assert accents.is_error
    assert accents.output.startswith("cannot type 'é✓' with the keyboard")
    region = await call(registry, "screen.capture", region=[1000, 0, 100, 100])
    assert region.output.startswith("region [1000, 0, 100, 100] is outside the screen")
    short = await call(registry, "screen.capture", region=[1, 2])
    assert short.is_error
    assert "region" in short.output


async def test_clipboard_round_trip(fresh_display: str) -> None:
    registry = ToolRegistry(make_desktop_tools(DesktopSettings(display=fresh_display)))
    empty = await ok(registry, "system.clipboard")
    assert empty.output == "(the clipboard is empty)"
    text = "Grüße from openpista ✓\nsecond line"
    copied = await ok(registry, "system.clipboard", text=text)
    assert copied.output == f"Copied {len(text)} characters to the clipboard"
    assert (await ok(registry, "system.clipboard")).output == text
    # Another program sees it too (the clipboard is the X server's, not ours).
    seen = await asyncio.to_thread(
        subprocess.run,
        ["xsel", "--clipboard", "--output"],
        env={**os.environ, "DISPLAY": fresh_display},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert seen.stdout == text


async def test_clipboard_helpers_get_no_secrets_of_openpista(
    fresh_display: str, env_marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xclip/xsel keep serving a copied text in the background: that process must not hold
    openpista's provider keys or bot tokens (only the scrubbed tool environment)."""
    name, _, value = env_marker.partition("=")
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_API_KEY", value)
    registry = ToolRegistry(make_desktop_tools(DesktopSettings(display=fresh_display)))
    await ok(registry, "system.clipboard", text="copied")
    assert (await ok(registry, "system.clipboard")).output == "copied"
    for marker in (env_marker, f"OPENAI_API_KEY={value}"):
        assert processes_carrying(marker) == {}


async def test_without_a_display_every_tool_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The display went away after the tools were registered."""
    monkeypatch.delenv("DISPLAY", raising=False)
    registry = ToolRegistry(make_desktop_tools(DesktopSettings(), bus=False))
    arguments: dict[str, dict[str, Any]] = {
        "screen.capture": {},
        "screen.ocr": {},
        "system.clipboard": {},
        "mouse.move": {"x": 1, "y": 1},
        "mouse.click": {},
        "keyboard.type": {"text": "x"},
        "keyboard.press": {"keys": "enter"},
    }
    assert set(registry.names()) == set(arguments)
    for name, args in arguments.items():
        result = await call(registry, name, **args)
        assert (result.is_error, result.output) == (True, NO_DISPLAY), name


def test_plugin_imports_without_a_display_and_offers_no_display_tools(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPLAY", "DBUS_"))}
    env.update(OPENPISTA_LOAD_PLUGINS="desktop", HOME=str(tmp_path), XDG_RUNTIME_DIR="/none")
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "from openpista.config import Settings\n"
        "from openpista.plugins import PluginHost\n"
        "from openpista.runtime import build_toolbox\n"
        "box = build_toolbox(PluginHost.load(), Settings())\n"
        "print(sorted(n for n in box.tools.names() if not n.startswith(('system.', 'memory.'))))\n"
        "print(box.problems, 'pyautogui' in sys.modules, 'mss' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["[]", "[] False False"]
    [line] = [line for line in done.stderr.splitlines() if "desktop tools" in line]
    assert line.startswith(
        "INFO desktop tools left out: screen.*, system.clipboard, mouse.*, keyboard.*: "
    )
    assert "no X display ($DISPLAY is unset" in line
    assert "system.notify: no session D-Bus" in line


def test_input_tools_can_be_switched_off() -> None:
    settings = DesktopSettings.from_config(Settings(tools={"desktop": {"allow_input": False}}))
    names = {item.name for item in make_desktop_tools(settings)}
    assert names == {"screen.capture", "screen.ocr", "system.clipboard", "system.notify"}
    assert not names & INPUT_TOOLS
    with pytest.raises(ConfigError, match=r"\[tools.desktop\] allow_imput: unknown option"):
        DesktopSettings.from_config(Settings(tools={"desktop": {"allow_imput": False}}))


def test_example_config_documents_every_option_with_its_default() -> None:
    import tomllib

    example = Path(__file__).resolve().parents[3] / "config.example.toml"
    text = example.read_text()
    start = text.index("# --- openpista-desktop")
    end = text.find("\n# --- ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    lines = [line[2:] for line in section.splitlines() if line.startswith("# ")]
    toml = "\n".join(line for line in lines if line.startswith(("[", *"edamot")))
    documented = tomllib.loads(toml)["tools"]["desktop"]
    assert set(documented) == set(DesktopSettings.model_fields)
    defaults = DesktopSettings().model_dump()
    assert {k: v for k, v in documented.items() if k != "display"} == {
        k: v for k, v in defaults.items() if k != "display"
    }
