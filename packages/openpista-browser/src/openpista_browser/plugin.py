"""The openpista plugin module of openpista-browser (entry point ``browser``).

Cheap to import: Playwright is imported when a browser tool first runs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista.hookspecs import hookimpl

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.tools.base import Tool
    from openpista_browser.manager import BrowserManager

_managers: weakref.WeakSet[BrowserManager] = weakref.WeakSet()


@hookimpl
def register_tools(register: Callable[[Tool], None], config: Settings) -> None:
    """Register the ``browser.*`` tools unless ``[tools.browser] enabled = false``."""
    from openpista_browser.manager import BrowserManager
    from openpista_browser.settings import browser_settings
    from openpista_browser.tools import make_browser_tools

    settings = browser_settings(config)
    if not settings.enabled:
        return
    manager = BrowserManager(settings)
    _managers.add(manager)
    for item in make_browser_tools(manager):
        register(item)


@hookimpl
async def runtime_closing(config: Settings) -> None:
    """Quit the browsers this process launched (``openpista run``, the TUI, the daemon)."""
    for manager in list(_managers):
        await manager.close()
