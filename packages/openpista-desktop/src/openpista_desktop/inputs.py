"""Mouse and keyboard through pyautogui (XTest on X11), imported on first use.

pyautogui connects to ``$DISPLAY`` when it is imported and stays on that display, so the
configured display is put into the environment before the import. python-xlib refuses to
connect without an ``~/.Xauthority`` file; when there is none (and no ``$XAUTHORITY``),
``/dev/null`` stands in for it: no cookies, which is what a missing file means.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from openpista.tools import ToolError

FAIL_SAFE = (
    "stopped by pyautogui's fail-safe: the mouse pointer is in a corner of the screen "
    "(someone moved it there to stop the agent); move it away and try again"
)

_lock = threading.Lock()


def pyautogui_for(display: str) -> ModuleType:
    """pyautogui, connected to ``display``; a ToolError when that is impossible."""
    with _lock:
        current = os.environ.get("DISPLAY")
        loaded = sys.modules.get("pyautogui")
        if loaded is not None:
            if current != display:
                raise ToolError(
                    f"mouse and keyboard are bound to display {current} (first used); "
                    f"restart openpista to use {display}"
                )
            return loaded
        os.environ["DISPLAY"] = display
        if "XAUTHORITY" not in os.environ and not (Path.home() / ".Xauthority").exists():
            os.environ["XAUTHORITY"] = os.devnull
        try:
            import pyautogui
        except Exception as exc:  # Xlib's DisplayConnectionError, XauthError, ...
            raise ToolError(
                f"cannot use the mouse and keyboard on display {display}: {exc}"
            ) from None
        gui: ModuleType = pyautogui
        return gui


def move(gui: ModuleType, x: int, y: int) -> str:
    """Move the pointer to ``(x, y)``."""
    _on_screen(gui, x, y)
    with _fail_safe(gui):
        gui.moveTo(x, y)
    return f"The mouse pointer is at ({x}, {y})"


def click(gui: ModuleType, x: int | None, y: int | None, button: str, clicks: int) -> str:
    """Click ``button`` ``clicks`` times, at ``(x, y)`` or where the pointer is."""
    if (x is None) != (y is None):
        raise ToolError("give both x and y, or neither (click where the pointer is)")
    if x is not None and y is not None:
        _on_screen(gui, x, y)
    with _fail_safe(gui):
        gui.click(x=x, y=y, button=button, clicks=clicks, interval=0.05)
    where = gui.position()
    times = "" if clicks == 1 else f" {clicks} times"
    return f"Clicked the {button} button{times} at ({where.x}, {where.y})"


def type_text(gui: ModuleType, text: str) -> str:
    """Type ``text`` as key presses on the focused window."""
    unknown = sorted({ch for ch in text if not gui.isValidKey(ch)})
    if unknown:
        raise ToolError(
            f"cannot type {''.join(unknown)!r} with the keyboard (no key for it); put the "
            "text on the clipboard with system.clipboard and paste it with keyboard.press "
            "ctrl+v"
        )
    with _fail_safe(gui):
        gui.write(text, interval=0.01)
    return f"Typed {len(text)} characters"


def press(gui: ModuleType, keys: str) -> str:
    """Press a key or a combination such as ``ctrl+shift+t`` (held down in order)."""
    names = [part.strip().lower() for part in keys.split("+")]
    if not all(names):
        raise ToolError(f"cannot read the keys {keys!r}; write them like ctrl+c or enter")
    unknown = [name for name in names if not gui.isValidKey(name)]
    if unknown:
        raise ToolError(
            f"unknown key name(s): {', '.join(unknown)}; use names like enter, tab, esc, "
            "backspace, up, f5, ctrl, alt, shift, win, a-z"
        )
    with _fail_safe(gui):
        gui.hotkey(*names)
    return f"Pressed {'+'.join(names)}"


def _on_screen(gui: ModuleType, x: int, y: int) -> None:
    if not gui.onScreen(x, y):
        width, height = gui.size()
        raise ToolError(f"({x}, {y}) is outside the screen ({width}x{height})")


@contextlib.contextmanager
def _fail_safe(gui: ModuleType) -> Iterator[None]:
    """Turns pyautogui's FailSafeException into a clear ToolError."""
    try:
        yield
    except gui.FailSafeException:
        raise ToolError(FAIL_SAFE) from None
