"""What the desktop tools need from the session: an X display and a session D-Bus.

The checks are cheap (a socket connect, no GUI library imported), so the plugin runs them
when it registers its tools. A session bus is never started: libdbus and GIO "autolaunch"
one (``dbus-launch``, then D-Bus activation starts a notification daemon) when no address
is set, and both outlive openpista.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

NO_SESSION_BUS = (
    "no session D-Bus: desktop notifications need a logged-in desktop session "
    "(DBUS_SESSION_BUS_ADDRESS naming a unix: socket, or a bus at $XDG_RUNTIME_DIR/bus); "
    "openpista does not start one"
)
CONNECT_SECONDS = 1.0
_X_DISPLAY = re.compile(r"(?P<host>[^:]*):(?P<number>\d{1,5})(?:\.\d{1,5})?")
# D-Bus address values: these bytes may stay as they are, the others are %-escaped.
_UNESCAPED = frozenset(b"-_/.\\*0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def display_problem(display: str | None, environ: Mapping[str, str]) -> str | None:
    """Why the X display ``display`` cannot be used now, ``None`` when an X server answers."""
    if not display:
        if environ.get("WAYLAND_DISPLAY"):
            return (
                "a Wayland session without XWayland ($DISPLAY is unset): "
                "the desktop tools need an X11 display"
            )
        return "no X display ($DISPLAY is unset and [tools.desktop] display is not set)"
    name = _X_DISPLAY.fullmatch(display)
    if name is None:
        return f"{display!r} is not an X display name (like :0 or localhost:10.0)"
    number = int(name["number"])
    if name["host"] in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"  # noqa: S108  the X11 server's fixed socket path
        answers = _connects_unix(path) or _connects_unix("\0" + path)
    else:
        answers = number < 59536 and _connects_tcp(name["host"], 6000 + number)
    return None if answers else f"no X server answers at {display}"


def session_bus(environ: Mapping[str, str]) -> str | None:
    """The address of a session D-Bus that is listening now, ``None`` when there is none.

    ``DBUS_SESSION_BUS_ADDRESS`` counts only for its ``unix:path=`` and ``unix:abstract=``
    entries (the first that answers; ``autolaunch:`` and other transports are refused);
    else ``$XDG_RUNTIME_DIR/bus`` when it is a socket of this user. The answer is one
    entry, so a client given it cannot fall back to anything else.
    """
    for entry in environ.get("DBUS_SESSION_BUS_ADDRESS", "").split(";"):
        target = _unix_socket(entry.strip())
        if target is not None and _connects_unix(target):
            return entry.strip()
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if not os.path.isabs(runtime):
        return None
    path = os.path.join(runtime, "bus")
    try:
        found = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(found.st_mode) or found.st_uid != os.getuid():
        return None
    return "unix:path=" + _escape(path) if _connects_unix(path) else None


def _unix_socket(entry: str) -> bytes | None:
    """The socket of a ``unix:path=`` / ``unix:abstract=`` entry (abstract: NUL first)."""
    transport, _, params = entry.partition(":")
    if transport != "unix":
        return None
    keys: dict[str, bytes] = {}
    for pair in params.split(","):
        key, _, value = pair.partition("=")
        keys[key] = unquote_to_bytes(value)
    if keys.get("path", b"").startswith(b"/"):
        return keys["path"]
    if keys.get("abstract"):
        return b"\0" + keys["abstract"]
    return None


def _escape(path: str) -> str:
    return "".join(
        chr(byte) if byte in _UNESCAPED else f"%{byte:02x}" for byte in os.fsencode(path)
    )


def _connects_unix(address: str | bytes) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(CONNECT_SECONDS)
        try:
            probe.connect(address)
        except (OSError, ValueError):
            return False
    return True


def _connects_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), CONNECT_SECONDS):
            return True
    except (OSError, ValueError):  # ValueError: a NUL; UnicodeError: a bad host name
        return False
