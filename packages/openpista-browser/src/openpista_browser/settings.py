"""``[tools.browser]``: the options of the browser tools."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator

from openpista import PluginSettings

if TYPE_CHECKING:
    from openpista_browser.guard import HostRules

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executables looked up on ``PATH`` when ``executable`` is not set, in this order."""
GUARD_FLAGS = ("--proxy", "--no-proxy", "--host-resolver-rules", "--proxy-bypass-list")
"""Chromium flags ``args`` may not set: the address guard owns them (see proxy.py)."""


class BrowserSettings(PluginSettings):
    """``[tools.browser]`` (documented in config.example.toml and docs/tools.md)."""

    section: ClassVar[str] = "tools.browser"

    enabled: bool = True
    executable: str | None = None
    display: str | None = None
    headless: bool | None = None
    timeout: float = Field(default=30.0, gt=0)
    element_timeout: float = Field(default=5.0, gt=0)
    idle_close: float = Field(default=300.0, ge=0)
    max_text_chars: int = Field(default=10_000, ge=100)
    viewport_width: int = Field(default=1280, ge=100, le=8192)
    viewport_height: int = Field(default=720, ge=100, le=8192)
    args: list[str] = Field(default_factory=list)
    allow_hosts: list[str] = Field(default_factory=list)
    deny_hosts: list[str] = Field(default_factory=list)

    @field_validator("allow_hosts", "deny_hosts")
    @classmethod
    def _hosts(cls, entries: list[str]) -> list[str]:
        from openpista_browser.guard import HostRules  # loaded only when hosts are set

        HostRules.parse(entries, [])
        return entries

    @field_validator("args")
    @classmethod
    def _no_guard_flags(cls, args: list[str]) -> list[str]:
        for arg in args:
            if arg.startswith(GUARD_FLAGS):
                raise ValueError(
                    f"{arg.split('=')[0]} cannot be set: the browser's proxy enforces "
                    "allow_hosts/deny_hosts"
                )
        return args

    def host_rules(self) -> HostRules:
        """The parsed ``allow_hosts`` and ``deny_hosts``."""
        from openpista_browser.guard import HostRules

        return HostRules.parse(self.allow_hosts, self.deny_hosts)

    @property
    def is_headless(self) -> bool:
        """Headless unless a display is configured (``headless`` overrides either way)."""
        return self.display is None if self.headless is None else self.headless

    def find_executable(self) -> str | None:
        """The configured browser, or the first Chromium/Chrome on ``PATH``; ``None``: none."""
        if self.executable is not None:
            return shutil.which(self.executable) or self.executable
        for name in BROWSER_NAMES:
            found = shutil.which(name)
            if found:
                return found
        return None
