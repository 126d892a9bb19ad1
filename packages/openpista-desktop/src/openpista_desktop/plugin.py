"""The openpista plugin module of openpista-desktop (entry point ``desktop``).

Cheap to import, and importable without a display: pyautogui and mss are imported when a
tool first runs (OCR runs the ``tesseract`` program). Tools this session cannot use (no X
server answering, no session D-Bus) are not offered; one INFO line says which and why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista import PluginContext, PluginSettings, Tool
    from openpista.doctor import DoctorCheck

log = logging.getLogger(__name__)


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_desktop.settings import DesktopSettings

    register(DesktopSettings)


@hookimpl
def register_tools(register: Callable[[Tool], None], context: PluginContext) -> None:
    """Register the desktop tools this session can use, unless ``[tools.desktop] enabled =
    false``; mouse and keyboard only with ``allow_input = true``."""
    from openpista_desktop.settings import DesktopSettings
    from openpista_desktop.tools import usable_desktop_tools

    settings = context.settings(DesktopSettings)
    if not settings.enabled:
        return
    usable, left_out = usable_desktop_tools(settings, os.environ)
    if left_out:
        log.info("desktop tools left out: %s", left_out)
    for item in usable:
        register(item)


@hookimpl
def doctor_checks(register: Callable[[DoctorCheck], None], context: PluginContext) -> None:
    """``openpista doctor``: whether an X server answers on the desktop tools' display."""
    from openpista_desktop.doctor import display_checks

    for check in display_checks(context, os.environ):
        register(check)
