"""``openpista doctor``: whether an X server answers on the display the desktop tools use
(``[tools.desktop] display``, else ``$DISPLAY``), and how to get one when none does."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

from openpista import ConfigError
from openpista.doctor import DoctorCheck, Finding
from openpista_desktop.availability import display_problem
from openpista_desktop.settings import DesktopSettings

if TYPE_CHECKING:
    from openpista import PluginContext

START_XVFB = "start `Xvfb :99` and set DISPLAY=:99 (or [tools.desktop] display)"


def display_checks(context: PluginContext, environ: Mapping[str, str]) -> list[DoctorCheck]:
    """The display check when ``[tools.desktop]`` is enabled and valid (the doctor's
    plugin line reports an invalid table)."""
    try:
        settings = context.settings(DesktopSettings)
    except ConfigError:
        return []
    if not settings.enabled:
        return []
    display = settings.display or environ.get("DISPLAY")
    return [DoctorCheck("display", partial(probe, display, dict(environ)), START_XVFB)]


async def probe(display: str | None, environ: Mapping[str, str]) -> Finding:
    """Connect to the X server of ``display`` (a second at most)."""
    problem = await asyncio.to_thread(display_problem, display, environ)
    if problem is None:
        return Finding(True, f"an X server answers at {display}")
    xvfb = shutil.which("Xvfb", path=environ.get("PATH", os.defpath))
    fix = f"{START_XVFB}; Xvfb is {xvfb}" if xvfb else f"install xvfb, then {START_XVFB}"
    return Finding(False, problem, fix)
