"""Desktop notifications through notify-send (libnotify: needs a session D-Bus and a
notification daemon such as dunst, GNOME Shell or Plasma).

notify-send runs only against a session bus that is listening (see
:func:`openpista_desktop.availability.session_bus`), with that one address and without
``DISPLAY``: libdbus and GIO then have nothing to autolaunch a bus with.
"""

from __future__ import annotations

from collections.abc import Mapping

from openpista.tools import ToolError
from openpista_desktop.availability import NO_SESSION_BUS, session_bus
from openpista_desktop.helpers import run_helper


async def notify(
    title: str, body: str, urgency: str, environ: Mapping[str, str], seconds: float
) -> None:
    """Show a notification; a ToolError saying why when no notifier takes it.

    ``environ`` is the environment to start from; the session bus is looked up in it.
    """
    address = session_bus(environ)
    if address is None:
        raise ToolError(NO_SESSION_BUS)
    env = {key: value for key, value in environ.items() if key != "DISPLAY"}
    env["DBUS_SESSION_BUS_ADDRESS"] = address
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
            "no desktop notification service took the notification (it needs a notification "
            "daemon such as dunst on the session D-Bus): "
            + (done.stderr or f"notify-send exited with {done.exit_code}")
        )
