"""Fixtures for openpista-desktop: a virtual X screen (Xvfb), a Tk window, a D-Bus session.

Xvfb picks a free display number itself (``-displayfd``); everything started here is
stopped after the test (or the session), even when it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openpista.tools.registry import ToolRegistry
from openpista_desktop.settings import DesktopSettings
from openpista_desktop.tools import make_desktop_tools

SCREEN = (1024, 768)  # test_desktop_tools.SCREEN
TK_APP = Path(__file__).with_name("tk_app.py")


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A new Xvfb server; yields its display name (``:N``)."""
    read, write = os.pipe()
    server = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write),
            "-screen",
            "0",
            f"{SCREEN[0]}x{SCREEN[1]}x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=[write],
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as numbers:
            number = numbers.readline().strip()
        assert number, "Xvfb did not report its display number"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """One virtual screen for the session (pyautogui stays on the display it first used)."""
    with xvfb() as name:
        yield name


@pytest.fixture
def fresh_display() -> Iterator[str]:
    """A virtual screen of this test only (an empty clipboard)."""
    with xvfb() as name:
        yield name


@pytest.fixture
def registry(display: str) -> ToolRegistry:
    """The desktop tools on the session's virtual screen."""
    return ToolRegistry(make_desktop_tools(DesktopSettings(display=display)))


@pytest.fixture
def tk_window(display: str, tmp_path: Path) -> Iterator[Callable[[], list[str]]]:
    """A Tk window at the top left of the screen; yields a function returning its log.

    The first log line is ``ready {"label": [x, y], "entry": ..., "button": ...}`` (the
    screen centres of its widgets); then ``hover``, ``submitted TEXT`` and ``clicked TEXT``.
    """
    log = tmp_path / "tk.log"
    log.touch()
    app = subprocess.Popen(
        [sys.executable, str(TK_APP), str(log)], env={**os.environ, "DISPLAY": display}
    )

    def lines() -> list[str]:
        return log.read_text().splitlines()

    try:
        for _ in range(200):
            if lines():
                break
            assert app.poll() is None, "the Tk window exited"
            time.sleep(0.05)
        yield lines
    finally:
        app.terminate()
        app.wait(10)


@contextlib.contextmanager
def dbus_daemon(address: str, config: Path | None = None) -> Iterator[str]:
    """A real ``dbus-daemon`` listening at ``address``; yields the address it prints.

    Its configuration is the standard session bus's, or the file ``config``. It runs in the
    foreground (``--nofork``) as our child, so stopping it leaves nothing.
    """
    bus = "--session" if config is None else f"--config-file={config}"
    daemon = subprocess.Popen(
        ["dbus-daemon", bus, "--nofork", f"--address={address}", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        printed = daemon.stdout.readline().strip()
        assert printed, "dbus-daemon did not print its address"
        yield printed
    finally:
        daemon.terminate()
        daemon.wait(10)
        if daemon.stdout is not None:
            daemon.stdout.close()


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[str]:
    """A private session D-Bus at ``tmp_path/bus`` (the ``$XDG_RUNTIME_DIR/bus`` layout)."""
    with dbus_daemon(f"unix:path={tmp_path}/bus") as address:
        yield address


def processes_carrying(marker: str) -> dict[int, str]:
    """Processes of this user other than this one whose environment holds ``marker``
    (``NAME=value``): their PIDs and command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            environ = (entry / "environ").read_bytes()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if marker.encode() in environ.split(b"\0"):
            found[int(entry.name)] = command.replace(b"\0", b" ").decode(errors="replace")
    return found


@pytest.fixture
def env_marker() -> Iterator[str]:
    """A unique ``NAME=value`` to put in an environment; processes still carrying it at the
    end of the test are killed (a failing test leaves nothing behind)."""
    marker = f"OPENPISTA_DESKTOP_MARKER={uuid.uuid4().hex}"
    yield marker
    for pid in processes_carrying(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dunst(display: str, session_bus: str) -> Iterator[dict[str, str]]:
    """dunst serving notifications on the screen and bus; yields the environment to use."""
    env = {**os.environ, "DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": session_bus}
    daemon = subprocess.Popen(["dunst"], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            probe = subprocess.run(["dunstctl", "count"], env=env, capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(0.05)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(10)
