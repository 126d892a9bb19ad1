"""What the desktop tools need from the session: a real X server (Xvfb) and a real session
D-Bus (dbus-daemon) with a real notification daemon (dunst); without them nothing is
started and the tools are not offered."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from openpista.config import Settings
from openpista.models import ToolCall
from openpista.plugin_context import PluginContext
from openpista.tools.base import Tool
from openpista.tools.registry import ToolRegistry
from openpista_desktop import plugin
from openpista_desktop.availability import NO_SESSION_BUS, display_problem, session_bus
from openpista_desktop.settings import DesktopSettings
from openpista_desktop.tools import make_desktop_tools

from .conftest import dbus_daemon, processes_carrying

DISPLAY_TOOLS = [
    "screen.capture",
    "screen.ocr",
    "system.clipboard",
    "mouse.move",
    "mouse.click",
    "keyboard.type",
    "keyboard.press",
]
NO_DISPLAY_REASON = "no X display ($DISPLAY is unset and [tools.desktop] display is not set)"
NOTIFY_SCRIPT = """
import asyncio, json, os, sys
from openpista.models import ToolCall
from openpista.tools.registry import ToolRegistry
from openpista_desktop.settings import DesktopSettings
from openpista_desktop.tools import make_desktop_tools

async def main():
    registry = ToolRegistry(make_desktop_tools(DesktopSettings()))
    answers = []
    for address in json.loads(sys.argv[1]):
        os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
        if address is not None:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        call = ToolCall(id="t", name="system.notify", arguments={"title": "hello"})
        result = await registry.dispatch(call)
        answers.append([result.is_error, result.output])
    print(json.dumps(answers))

asyncio.run(main())
"""


def unused_display_number() -> int:
    """An X display number no server listens on (neither its socket file nor abstract)."""
    for number in range(4242, 4342):
        if display_problem(f":{number}", {}) is not None:
            return number
    raise AssertionError("every display number from 4242 answers")


def registered(config: Settings) -> list[str]:
    """The names the plugin's register_tools hook registers with ``config`` now."""
    tools: list[Tool] = []
    plugin.register_tools(register=tools.append, context=PluginContext(config))
    return [item.name for item in tools]


def clean_session(monkeypatch: pytest.MonkeyPatch, runtime_dir: Path) -> None:
    """No display, no bus, an empty ``$XDG_RUNTIME_DIR`` (the test sets what it needs)."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))


# --- no bus: nothing is started ------------------------------------------------------------


def test_notify_without_a_bus_starts_no_bus_and_no_notifier(
    display: str, env_marker: str, tmp_path: Path
) -> None:
    """With DISPLAY set, libdbus/GIO would autolaunch dbus-daemon and D-Bus activation
    dunst (both outliving openpista); every hostile or missing address must only say so."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "bus").write_text("not a socket")  # the fallback must not take a plain file
    stale = tmp_path / "stale"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))  # a socket file nobody listens on (a crashed bus)
    addresses = [
        None,
        "",
        "autolaunch:",
        "autolaunch:scope=*user",
        f"unix:path={tmp_path}/missing;autolaunch:",
        f"unix:path={stale}",
        "unix:tmpdir=/tmp",
        "unix:runtime=yes",
        "unix:path=relative/bus",
        "unix:abstract=",
        f"unix:abstract=openpista-none-{uuid.uuid4().hex}",
        "tcp:host=127.0.0.1,port=9",
        "launchd:env=DBUS_LAUNCHD_SESSION_BUS_SOCKET",
        "disabled:",
        "unix:path=%zz%00%ff",
        "garbage;;;,,,===",
    ]
    name, _, value = env_marker.partition("=")
    env = {key: val for key, val in os.environ.items() if not key.startswith("DBUS_")}
    env.update({"DISPLAY": display, "XDG_RUNTIME_DIR": str(runtime), name: value})
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run(
        [sys.executable, "-c", NOTIFY_SCRIPT, json.dumps(addresses)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[True, NO_SESSION_BUS]] * len(addresses)
    assert processes_carrying(env_marker) == {}


def test_session_bus_takes_only_a_listening_unix_socket(tmp_path: Path) -> None:
    abstract = f"openpista-test-{uuid.uuid4().hex}"
    with (
        dbus_daemon(f"unix:path={tmp_path}/bus") as by_path,
        dbus_daemon(f"unix:abstract={abstract}") as by_name,
    ):
        assert by_path.startswith(f"unix:path={tmp_path}/bus,guid=")
        assert by_name.startswith(f"unix:abstract={abstract},guid=")
        assert session_bus({"DBUS_SESSION_BUS_ADDRESS": by_path}) == by_path
        assert session_bus({"DBUS_SESSION_BUS_ADDRESS": by_name}) == by_name
        # Only the entry that answers is handed on, never the fallbacks around it.
        listed = f"unix:path={tmp_path}/none;autolaunch:; {by_name} ;autolaunch:"
        assert session_bus({"DBUS_SESSION_BUS_ADDRESS": listed}) == by_name
        assert session_bus({"DBUS_SESSION_BUS_ADDRESS": f"autolaunch:;{by_path}"}) == by_path
        # $XDG_RUNTIME_DIR/bus when the variable names nothing usable.
        fallback = {"DBUS_SESSION_BUS_ADDRESS": "autolaunch:", "XDG_RUNTIME_DIR": str(tmp_path)}
        assert session_bus(fallback) == f"unix:path={tmp_path}/bus"
        assert session_bus({"XDG_RUNTIME_DIR": "relative"}) is None
    assert session_bus({"DBUS_SESSION_BUS_ADDRESS": by_path}) is None  # stopped: stale file
    assert session_bus({"DBUS_SESSION_BUS_ADDRESS": by_name}) is None


def test_the_runtime_bus_must_be_a_socket_of_ours(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "bus").symlink_to(real / "bus")
    with dbus_daemon(f"unix:path={real}/bus"):
        assert session_bus({"XDG_RUNTIME_DIR": str(real)}) == f"unix:path={real}/bus"
        assert session_bus({"XDG_RUNTIME_DIR": str(linked)}) is None  # a symlink
        if os.getuid() == 0:  # only root can give a socket to someone else
            os.chown(real / "bus", 65534, 65534)
            assert session_bus({"XDG_RUNTIME_DIR": str(real)}) is None


def test_the_bus_address_is_escaped(tmp_path: Path) -> None:
    odd = tmp_path / "a b,c=d%é"
    odd.mkdir()
    escaped = f"unix:path={tmp_path}/a%20b%2cc%3dd%25%c3%a9/bus"
    with dbus_daemon(escaped) as printed:
        assert session_bus({"XDG_RUNTIME_DIR": str(odd)}) == escaped
        assert session_bus({"DBUS_SESSION_BUS_ADDRESS": escaped}) == escaped
        assert session_bus({"DBUS_SESSION_BUS_ADDRESS": printed}) == printed


# --- with a bus: the notification reaches the daemon ----------------------------------------


async def notifications_of(dunst: dict[str, str]) -> list[tuple[str, str, str]]:
    """(app, summary, body) of what dunst showed, after closing it."""
    await asyncio.to_thread(subprocess.run, ["dunstctl", "close-all"], env=dunst, check=True)
    history = await asyncio.to_thread(
        subprocess.run,
        ["dunstctl", "history"],
        env=dunst,
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        (entry["appname"]["data"], entry["summary"]["data"], entry["body"]["data"])
        for entry in json.loads(history.stdout)["data"][0]
    ]


@pytest.mark.parametrize("found_by", ["DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"])
async def test_notification_reaches_the_notification_daemon(
    found_by: str,
    dunst: dict[str, str],
    env_marker: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clean_session(monkeypatch, tmp_path / "elsewhere")
    if found_by == "DBUS_SESSION_BUS_ADDRESS":
        monkeypatch.setenv(found_by, dunst["DBUS_SESSION_BUS_ADDRESS"])
    else:
        monkeypatch.setenv(found_by, str(tmp_path))  # the session bus is tmp_path/bus
    name, _, value = env_marker.partition("=")
    monkeypatch.setenv(name, value)
    assert registered(Settings()) == ["system.notify"]  # a bus but no display
    registry = ToolRegistry(make_desktop_tools(DesktopSettings(), display=False))
    shown = await registry.dispatch(
        ToolCall(id="t", name="system.notify", arguments={"title": "Build", "body": "is green"})
    )
    assert (shown.is_error, shown.output) == (False, "Notification shown: Build")
    assert await notifications_of(dunst) == [("openpista", "Build", "is green")]
    assert processes_carrying(env_marker) == {}


async def test_a_bus_without_a_notifier_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_session(monkeypatch, tmp_path)
    # The standard session bus would start dunst by D-Bus activation: this one has no
    # service directories, so nothing takes the notification.
    config = tmp_path / "bare.conf"
    config.write_text(
        "<busconfig><type>session</type><listen>unix:tmpdir=/tmp</listen>"  # --address wins
        "<auth>EXTERNAL</auth><policy context='default'>"
        "<allow send_destination='*' eavesdrop='true'/><allow eavesdrop='true'/>"
        "<allow own='*'/></policy></busconfig>"
    )
    with dbus_daemon(f"unix:path={tmp_path}/bare", config) as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        registry = ToolRegistry(make_desktop_tools(DesktopSettings(), display=False))
        failed = await registry.dispatch(
            ToolCall(id="t", name="system.notify", arguments={"title": "hello"})
        )
    assert failed.is_error
    assert failed.output.startswith(
        "no desktop notification service took the notification (it needs a notification "
        "daemon such as dunst on the session D-Bus): "
    )


# --- registration: only what this session can use -------------------------------------------


def test_display_problem_connects_to_the_x_server(display: str) -> None:
    number = display.removeprefix(":")
    for usable in (display, f"{display}.0", f"unix:{number}", f"unix:{number}.0"):
        assert display_problem(usable, {}) is None, usable
    unused = unused_display_number()
    assert display_problem(f":{unused}", {}) == f"no X server answers at :{unused}"
    assert display_problem(None, {}) == NO_DISPLAY_REASON
    assert display_problem("", {"WAYLAND_DISPLAY": "wayland-0"}) == (
        "a Wayland session without XWayland ($DISPLAY is unset): "
        "the desktop tools need an X11 display"
    )
    for hostile in ("0", "garbage", ":", ":x", ":99999999", "::1:0", ":0;rm -rf /", ":0\n"):
        assert display_problem(hostile, {}) == (
            f"{hostile!r} is not an X display name (like :0 or localhost:10.0)"
        ), hostile
    for unreachable in ("127.0.0.1:59536", "\0:0", f"{'a' * 300}:0", "127.0.0.1:59535"):
        assert display_problem(unreachable, {}) == f"no X server answers at {unreachable}"


def test_display_problem_reaches_a_tcp_display() -> None:
    with socket.socket() as server:
        for number in range(50, 100):  # a free X port on loopback (6000 + display number)
            try:
                server.bind(("127.0.0.1", 6000 + number))
                break
            except OSError:
                continue
        else:
            raise AssertionError("no free port in 6050-6099")
        server.listen()
        assert display_problem(f"127.0.0.1:{number}.0", {}) is None
    assert (
        display_problem(f"127.0.0.1:{number}", {}) == f"no X server answers at 127.0.0.1:{number}"
    )


def test_with_display_and_bus_every_tool_is_offered(
    display: str, session_bus: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_session(monkeypatch, tmp_path / "elsewhere")
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session_bus)
    assert registered(Settings()) == [*DISPLAY_TOOLS, "system.notify"]
    # [tools.desktop] display counts as well as $DISPLAY.
    monkeypatch.delenv("DISPLAY")
    configured = Settings(tools={"desktop": {"display": display}})
    assert registered(configured) == [*DISPLAY_TOOLS, "system.notify"]


def test_what_is_left_out_is_logged_once_with_the_reason(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_session(monkeypatch, tmp_path)
    caplog.set_level(logging.INFO, logger=plugin.__name__)
    unused = unused_display_number()
    cases: list[tuple[dict[str, str], dict[str, Any], str]] = [
        ({}, {}, f"screen.*, system.clipboard, mouse.*, keyboard.*: {NO_DISPLAY_REASON}"),
        (
            {"WAYLAND_DISPLAY": "wayland-0"},
            {"allow_input": False},
            "screen.*, system.clipboard: a Wayland session without "
            "XWayland ($DISPLAY is unset): the desktop tools need an X11 display",
        ),
        (
            {"DISPLAY": f":{unused}"},
            {},
            f"screen.*, system.clipboard, mouse.*, keyboard.*: no X server answers at :{unused}",
        ),
    ]
    for env, options, reason in cases:
        caplog.clear()
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            assert registered(Settings(tools={"desktop": options})) == []
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("INFO", f"desktop tools left out: {reason}; system.notify: {NO_SESSION_BUS}")
        ]
    caplog.clear()
    assert registered(Settings(tools={"desktop": {"enabled": False}})) == []
    assert caplog.records == []  # switched off: nothing to explain
