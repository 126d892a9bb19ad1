"""The openpista plugin module of openpista-desktop (entry point ``desktop``).

Cheap to import, and importable without a display: pyautogui, mss and pytesseract are
imported when a tool first runs, and every tool answers with a clear error when no
display is available.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista.hookspecs import hookimpl

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.tools.base import Tool


@hookimpl
def register_tools(register: Callable[[Tool], None], config: Settings) -> None:
    """Register the desktop tools unless ``[tools.desktop] enabled = false``; mouse and
    keyboard only with ``allow_input = true``."""
    from openpista_desktop.settings import desktop_settings
    from openpista_desktop.tools import make_desktop_tools

    settings = desktop_settings(config)
    if not settings.enabled:
        return
    for item in make_desktop_tools(settings):
        register(item)
