"""The openpista plugin module of openpista-browser (entry point ``browser``).

Cheap to import: Playwright is imported when a browser tool first runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista import PluginContext, PluginSettings, Tool


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_browser.settings import BrowserSettings

    register(BrowserSettings)


@hookimpl
def register_tools(register: Callable[[Tool], None], context: PluginContext) -> None:
    """Register the ``browser.*`` tools unless ``[tools.browser] enabled = false``; the
    browser they launch is quit when the runtime closes."""
    from openpista_browser.manager import BrowserManager
    from openpista_browser.settings import BrowserSettings
    from openpista_browser.tools import make_browser_tools

    settings = context.settings(BrowserSettings)
    if not settings.enabled:
        return
    manager = BrowserManager(settings)
    context.on_close(manager.close)
    for item in make_browser_tools(manager):
        register(item)
