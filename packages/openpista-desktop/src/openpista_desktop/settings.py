"""``[tools.desktop]``: the options of the desktop tools."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import Field

from openpista import PluginSettings
from openpista.tools import ToolError, tool_environment

NO_DISPLAY = (
    "no graphical display: the desktop tools need an X11 display; start openpista with "
    'DISPLAY set or set [tools.desktop] display (e.g. ":0"; Xvfb works on a headless machine)'
)


class DesktopSettings(PluginSettings):
    """``[tools.desktop]`` (documented in config.example.toml and docs/tools.md)."""

    section: ClassVar[str] = "tools.desktop"

    enabled: bool = True
    display: str | None = None
    allow_input: bool = True
    max_width: int = Field(default=1920, ge=0)
    ocr_language: str = Field(default="eng", pattern=r"^[A-Za-z0-9_+]{1,64}$")
    max_text_chars: int = Field(default=10_000, ge=100)
    timeout: float = Field(default=10.0, gt=0)

    def display_name(self) -> str:
        """The X display to use: ``display``, else ``$DISPLAY``; a ToolError when neither."""
        name = self.display or os.environ.get("DISPLAY")
        if not name:
            raise ToolError(NO_DISPLAY)
        return name

    def environment(self) -> dict[str, str]:
        """The scrubbed tool environment with ``DISPLAY`` set, for helper programs (no
        provider keys or bot tokens reach xclip, xsel or xdotool)."""
        return {**tool_environment(), "DISPLAY": self.display_name()}
