"""The openpista plugin module of openpista-browser (entry point ``browser``).

Cheap to import and to register (the settings and the tools' schemas): the browser manager
and its guarding proxy are made, and Playwright imported, when a browser tool first runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista import PluginContext, PluginSettings, Tool
    from openpista_browser.manager import BrowserManager


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_browser.settings import BrowserSettings

    register(BrowserSettings)


@hookimpl
def register_tools(register: Callable[[Tool], None], context: PluginContext) -> None:
    """Register the ``browser.*`` tools unless ``[tools.browser] enabled = false``; the
    browser they launch is quit when the runtime closes."""
    from openpista_browser.settings import BrowserSettings
    from openpista_browser.tools import make_browser_tools

    settings = context.settings(BrowserSettings)
    if not settings.enabled:
        return
    for item in make_browser_tools(settings, lambda: context.shared(make_manager)):
        register(item)


def make_manager(context: PluginContext) -> BrowserManager:
    """The runtime's browser manager (``context.shared(make_manager)``), closed with the
    runtime."""
    from openpista_browser.manager import BrowserManager
    from openpista_browser.settings import BrowserSettings

    manager = BrowserManager(context.settings(BrowserSettings))
    context.on_close(manager.close)
    return manager
