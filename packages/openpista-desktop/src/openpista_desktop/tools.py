"""The desktop tools: screen.*, mouse.*, keyboard.*, system.clipboard and system.notify.

Building them needs only the settings; the modules that capture, type and notify are
imported by the first call.
"""

# No ``from __future__ import annotations``: the tool decorator evaluates the parameter
# annotations, which use names of this module.

import asyncio
import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from openpista.models import Attachment
from openpista.tools import CapturedText, Tool, ToolOutput, tool, tool_environment
from openpista_desktop.availability import NO_SESSION_BUS, display_problem, session_bus
from openpista_desktop.settings import DesktopSettings

if TYPE_CHECKING:
    from openpista_desktop.screen import Region

RegionArgument = Annotated[
    list[int] | None,
    Field(
        min_length=4,
        max_length=4,
        description="[x, y, width, height] of the part of the screen (default: all of it).",
    ),
]


def make_desktop_tools(
    settings: DesktopSettings, *, display: bool = True, bus: bool = True
) -> list[Tool]:
    """The desktop tools: with ``display`` the screen, clipboard and (when
    ``settings.allow_input``) mouse and keyboard tools; with ``bus`` system.notify."""
    made: list[Tool] = []
    if display:
        made.extend([*_screen_tools(settings), _clipboard_tool(settings)])
        if settings.allow_input:
            made.extend(_input_tools(settings))
    if bus:
        made.append(_notify_tool(settings))
    return made


def usable_desktop_tools(
    settings: DesktopSettings, environ: Mapping[str, str]
) -> tuple[list[Tool], str | None]:
    """The desktop tools this session can use now, and one line naming those left out and why.

    The display tools need an X server answering at ``settings.display`` (else
    ``$DISPLAY``); system.notify needs a listening session D-Bus.
    """
    problem = display_problem(settings.display or environ.get("DISPLAY"), environ)
    bus = session_bus(environ) is not None
    usable = make_desktop_tools(settings, display=problem is None, bus=bus)
    reasons = []
    if problem is not None:
        families = "screen.*, system.clipboard"
        if settings.allow_input:
            families += ", mouse.*, keyboard.*"
        reasons.append(f"{families}: {problem}")
    if not bus:
        reasons.append(f"system.notify: {NO_SESSION_BUS}")
    return usable, "; ".join(reasons) or None


def _screen_tools(settings: DesktopSettings) -> list[Tool]:
    @tool("screen.capture")
    async def capture(
        region: RegionArgument = None,
        max_width: Annotated[
            int | None,
            Field(ge=16, description=f"Scale down to this width (default {settings.max_width})."),
        ] = None,
    ) -> ToolOutput:
        """Take a PNG screenshot of the screen (or a region); it is shown to you and the user.

        Coordinates in the picture are screen pixels unless it was scaled down (see result).
        """
        from openpista_desktop import screen

        display = settings.display_name()
        shot = await asyncio.to_thread(screen.grab, display, _region(region))
        limit = max_width if max_width is not None else settings.max_width
        png, size = await asyncio.to_thread(screen.to_png, shot.image, limit)
        x, y, width, height = shot.region
        scaled = "" if size == (width, height) else f", scaled to {size[0]}x{size[1]}"
        return ToolOutput(
            text=(
                f"Screenshot of display {display} (screen {shot.screen[0]}x{shot.screen[1]}), "
                f"region [{x}, {y}, {width}, {height}]{scaled}"
            ),
            attachments=[
                Attachment(
                    name="screen.png",
                    mime_type="image/png",
                    data=base64.b64encode(png).decode("ascii"),
                )
            ],
        )

    @tool("screen.ocr")
    async def ocr(region: RegionArgument = None) -> str:
        """Read the text shown on the screen (or in a region) with OCR (Tesseract)."""
        from openpista_desktop import screen

        display = settings.display_name()
        shot = await asyncio.to_thread(screen.grab, display, _region(region))
        text = await screen.read_text(shot.image, settings.ocr_language, settings.timeout)
        if not text:
            return "(no text found)"
        middle = len(text) // 2
        clipped = CapturedText(head=text[:middle], tail=text[middle:])
        return clipped.clipped(settings.max_text_chars).render()

    return [capture, ocr]


def _clipboard_tool(settings: DesktopSettings) -> Tool:
    @tool("system.clipboard")
    async def clipboard(
        text: Annotated[
            str | None,
            Field(description="Text to put on the clipboard; leave out to read the clipboard."),
        ] = None,
    ) -> str:
        """Read the clipboard's text, or replace it with `text`."""
        from openpista_desktop.clipboard import read_clipboard, write_clipboard

        env = settings.environment()
        if text is None:
            current = await read_clipboard(env, settings.timeout)
            return current if current is not None else "(the clipboard is empty)"
        await write_clipboard(text, env, settings.timeout)
        return f"Copied {len(text)} characters to the clipboard"

    return clipboard


def _notify_tool(settings: DesktopSettings) -> Tool:
    @tool("system.notify")
    async def notify_user(
        title: Annotated[str, Field(min_length=1, description="The notification's headline.")],
        body: Annotated[str, Field(description="More text under the headline.")] = "",
        urgency: Annotated[
            Literal["low", "normal", "critical"], Field(description="How insistent it is.")
        ] = "normal",
    ) -> str:
        """Show a desktop notification to the user sitting at this computer."""
        from openpista_desktop.notify import notify

        await notify(title, body, urgency, tool_environment(), settings.timeout)
        return f"Notification shown: {title}"

    return notify_user


def _input_tools(settings: DesktopSettings) -> list[Tool]:
    lock = asyncio.Lock()  # one input action at a time: pyautogui is not thread-safe

    async def drive(action: str, *args: object) -> str:
        from openpista_desktop import inputs

        gui = await asyncio.to_thread(inputs.pyautogui_for, settings.display_name())
        async with lock:
            return str(await asyncio.to_thread(getattr(inputs, action), gui, *args))

    @tool("mouse.move")
    async def mouse_move(
        x: Annotated[int, Field(ge=0, description="Screen x in pixels (0 is the left edge).")],
        y: Annotated[int, Field(ge=0, description="Screen y in pixels (0 is the top edge).")],
    ) -> str:
        """Move the mouse pointer to a point of the screen."""
        return await drive("move", x, y)

    @tool("mouse.click")
    async def mouse_click(
        x: Annotated[int | None, Field(ge=0, description="Screen x (default: pointer).")] = None,
        y: Annotated[int | None, Field(ge=0, description="Screen y (default: pointer).")] = None,
        button: Annotated[Literal["left", "middle", "right"], Field()] = "left",
        clicks: Annotated[int, Field(ge=1, le=3, description="2 for a double click.")] = 1,
    ) -> str:
        """Click a mouse button at a point of the screen (or where the pointer is)."""
        return await drive("click", x, y, button, clicks)

    @tool("keyboard.type")
    async def keyboard_type(
        text: Annotated[str, Field(min_length=1, description="The text to type.")],
    ) -> str:
        """Type text into the focused window, key by key (\\n presses Enter)."""
        return await drive("type_text", text)

    @tool("keyboard.press")
    async def keyboard_press(
        keys: Annotated[
            str, Field(min_length=1, description="A key or combination: enter, ctrl+c, alt+f4.")
        ],
    ) -> str:
        """Press a key or a key combination (keys joined with +, held down in order)."""
        return await drive("press", keys)

    return [mouse_move, mouse_click, keyboard_type, keyboard_press]


def _region(region: list[int] | None) -> "Region | None":
    if not region:
        return None
    x, y, width, height = region  # validated: exactly four
    return (x, y, width, height)
