"""Desktop notifications through notify-send (libnotify: needs a session D-Bus and a
notification daemon such as dunst, GNOME Shell or Plasma)."""

from __future__ import annotations

from collections.abc import Mapping

from openpista.tools.base import ToolError
from openpista_desktop.helpers import run_helper

URGENCIES = ("low", "normal", "critical")


async def notify(
    title: str, body: str, urgency: str, env: Mapping[str, str], seconds: float
) -> None:
    """Show a notification; a ToolError saying why when no notifier takes it."""
    argv = ["notify-send", f"--urgency={urgency}", "--app-name=openpista", "--", title]
    if body:
        argv.append(body)
    try:
        done = await run_helper(argv, env, seconds)
    except ToolError as exc:
        if "not installed" in str(exc):
            raise ToolError("notifications need notify-send: install libnotify-bin") from None
        raise
    if done.exit_code != 0:
        raise ToolError(
            "no desktop notification service took the notification (it needs a session "
            "D-Bus and a notification daemon such as dunst): "
            + (done.stderr or f"notify-send exited with {done.exit_code}")
        )
