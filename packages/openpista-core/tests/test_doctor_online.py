"""The doctor's runner of plugins' online checks (``doctor_checks``): every outcome of a
check becomes one line, in registration order, and none stops the others."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest

from openpista.cli.doctor import Check, run_online
from openpista.doctor import DoctorCheck, Finding, Unreachable, request_json
from openpista_testing.ports import free_port, silent_port

FIX = "set [channels.x] api_base"


async def fine() -> Finding:
    return Finding(True, "valid")


async def broken() -> Finding:
    raise ValueError("no result\n  (from the plugin)")


async def hangs() -> Finding:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def refused() -> Finding:
    raise Unreachable("cannot reach http://127.0.0.1:9: ConnectError")


async def test_each_outcome_is_one_line_in_order() -> None:
    found = await run_online(
        [
            DoctorCheck("hung", hangs, FIX),
            DoctorCheck("bug", broken),
            DoctorCheck("ok", fine),
            DoctorCheck("down", refused, FIX),
        ],
        0.3,
    )

    assert found == [
        Check("hung", False, "no answer within 0.3 s", FIX),
        Check(
            "bug",
            False,
            "the check failed: ValueError: no result (from the plugin)",
            "report it to the plugin's author",
        ),
        Check("ok", True, "valid"),
        Check("down", False, "cannot reach http://127.0.0.1:9: ConnectError", FIX),
    ]


async def test_no_checks_no_lines() -> None:
    assert await run_online([], 1) == []


async def test_an_unreachable_url_is_named_without_its_secrets() -> None:
    port = free_port()

    with pytest.raises(Unreachable) as caught:
        await request_json("GET", f"http://user:s3cret@127.0.0.1:{port}/botS3CRET/getMe")

    message = str(caught.value)
    assert message.startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert "s3cret" not in message.lower()


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}' if self.path == "/json" else b"<html>502 Bad Gateway</html>"
        self.send_response(200 if self.path == "/json" else 502)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[str]:
    """A loopback server: ``/json`` answers JSON, anything else an HTML error page."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


async def test_the_status_and_the_json_body_or_none(pages: str) -> None:
    assert await request_json("GET", f"{pages}/json") == (200, {"ok": True})
    assert await request_json("GET", f"{pages}/front-end") == (502, None)


async def test_a_silent_server_waits_until_cancelled() -> None:
    with silent_port() as port, pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await request_json("GET", f"http://127.0.0.1:{port}/")


async def hostile() -> Finding:
    return Finding(False, "refused:\n\x1b[2J\x1b]0;owned\x07 bye\r\n" + "x" * 2000, "a\tfix\x9b")


async def test_what_a_service_answered_is_one_printable_line() -> None:
    (found,) = await run_online([DoctorCheck("name\x1b[31m", hostile, "down\nfix")], 1)

    assert found.name == "name [31m"
    assert found.detail.startswith("refused: [2J ]0;owned bye xxx")
    assert len(found.detail) == 500
    assert found.fix == "a fix"
    shown = found.name + found.detail + found.fix
    assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in shown)
