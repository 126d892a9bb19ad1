"""The address guard: what the browser may reach, checked by rules and with real Chromium."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from openpista.models import ToolCall, ToolResult
from openpista.tools.registry import ToolRegistry
from openpista_browser.guard import Blocked, HostRules
from openpista_browser.manager import BrowserManager
from openpista_browser.settings import BrowserSettings
from openpista_browser.tools import make_browser_tools

from .conftest import OtherSite

HINT = "allow it with [tools.browser] allow_hosts"


async def call(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    return await registry.dispatch(ToolCall(id="t", name=name, arguments=arguments))


@pytest.fixture
async def open_browser() -> AsyncIterator[Any]:
    """``open_browser(**settings)``: a tool registry over a new browser, closed afterwards."""
    managers: list[BrowserManager] = []

    def make(**options: Any) -> ToolRegistry:
        manager = BrowserManager(BrowserSettings(timeout=10, element_timeout=1, **options))
        managers.append(manager)
        return ToolRegistry(make_browser_tools(manager.settings, lambda: manager))

    yield make
    for manager in managers:
        await manager.close()


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1 is a loopback address"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1 is a loopback address"),
        ("2130706433", "2130706433 (127.0.0.1) is a loopback address"),
        ("0x7f.1", "0x7f.1 (127.0.0.1) is a loopback address"),
        ("017700000001", "017700000001 (127.0.0.1) is a loopback address"),
        ("localhost", "localhost (127.0.0.1) is a loopback address"),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("fd00:ec2::254", "fd00:ec2::254 is a cloud metadata address"),
        ("169.254.1.1", "169.254.1.1 is a link-local address"),
        ("fe80::1", "fe80::1 is a link-local address"),
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("192.168.0.1", "192.168.0.1 is a private address"),
        ("100.100.100.200", "100.100.100.200 is a CGNAT address"),
        ("fd12:3456::1", "fd12:3456::1 is a unique-local or other private IPv6 address"),
        ("224.0.0.251", "224.0.0.251 is a multicast address"),
        ("ff02::1", "ff02::1 is a multicast address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("::", ":: is an unspecified address"),
        ("64:ff9b::a00:1", "64:ff9b::a00:1 is a private address"),
        ("2002:7f00:1::", "2002:7f00:1:: is a loopback address"),
        ("192.0.2.1", "192.0.2.1 is a private address"),
    ],
)
async def test_non_public_addresses_are_blocked_by_default(host: str, why: str) -> None:
    with pytest.raises(Blocked) as blocked:
        await HostRules.parse([], []).resolve(host, 80)
    assert str(blocked.value).startswith(f"blocked: {why}; {HINT}")


async def test_public_addresses_pass() -> None:
    rules = HostRules.parse([], [])
    for host in ("93.184.215.14", "2606:4700::1111", "::ffff:93.184.215.14"):
        [address] = await rules.resolve(host, 443)
        assert address == ipaddress.ip_address(host)


async def test_allow_and_deny_lists() -> None:
    one = HostRules.parse(["127.0.0.1"], [])
    assert [str(a) for a in await one.resolve("127.0.0.1", 80)] == ["127.0.0.1"]
    with pytest.raises(Blocked, match=r"127\.0\.0\.2 is a loopback address"):
        await one.resolve("127.0.0.2", 80)
    ranged = HostRules.parse(["127.0.0.0/8", "LocalHost."], [])
    assert [str(a) for a in await ranged.resolve("0x7f.2", 80)] == ["127.0.0.2"]
    assert await ranged.resolve("localhost", 80)
    denied = HostRules.parse(["127.0.0.0/8"], ["127.0.0.5", "93.184.215.0/24", "evil.example"])
    with pytest.raises(Blocked, match=r"127\.0\.0\.5 \(127\.0\.0\.5\) is in a range of .*deny"):
        await denied.resolve("127.0.0.5", 80)
    with pytest.raises(Blocked, match="deny_hosts"):
        await denied.resolve("93.184.215.14", 80)
    with pytest.raises(Blocked, match=r"evil\.example is listed in"):
        await denied.resolve("Evil.Example", 80)
    with pytest.raises(Blocked, match=r"cannot resolve no-such-host\.invalid"):
        await ranged.resolve("no-such-host.invalid", 80)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "a/b", "", "exa mple", "http://x"])
def test_bad_host_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="allow_hosts"):
        BrowserSettings(allow_hosts=[entry])


def test_args_cannot_turn_the_guard_off() -> None:
    for flag in ("--proxy-server=direct://", "--no-proxy-server", "--host-resolver-rules=x"):
        with pytest.raises(ValidationError, match="cannot be set: the browser's proxy"):
            BrowserSettings(args=[flag])


async def test_by_default_local_and_file_addresses_are_blocked(
    open_browser: Any, site: str, other_site: OtherSite
) -> None:
    registry = open_browser()
    port = site.rsplit(":", 1)[1]
    cases = {
        f"{site}/": "blocked: 127.0.0.1 is a loopback address",
        f"http://localhost:{port}/": "blocked: localhost (127.0.0.1) is a loopback address",
        f"http://2130706433:{port}/": "blocked: 2130706433 (127.0.0.1) is a loopback address",
        f"http://0x7f.1:{port}/": "blocked: 0x7f.1 (127.0.0.1) is a loopback address",
        f"http://[::ffff:127.0.0.1]:{port}/": "blocked: ::ffff:127.0.0.1 is a loopback address",
        "http://169.254.169.254/latest/meta-data/": "blocked: 169.254.169.254 is a cloud",
        f"{other_site.base}/secret": "blocked: 127.0.0.2 is a loopback address",
    }
    for url, why in cases.items():
        result = await call(registry, "browser.navigate", url=url)
        assert result.is_error, url
        assert result.output.startswith(f"cannot open {url}: {why}"), result.output
        assert result.output.endswith(HINT)
    for url in ("file:///etc/passwd", "data:text/html,<p>x</p>", "chrome://version"):
        result = await call(registry, "browser.navigate", url=url)
        assert result.is_error
        assert "blocked: the scheme" in result.output
        assert "root:" not in result.output
    assert other_site.paths == []
    blank = await call(registry, "browser.navigate", url="about:blank")
    assert not blank.is_error, blank.output


async def test_a_redirect_to_a_blocked_address_is_stopped(
    open_browser: Any, site: str, other_site: OtherSite
) -> None:
    registry = open_browser(allow_hosts=["127.0.0.1"])
    for target in (f"{other_site.base}/secret", other_site.base.replace("http:", "https:")):
        url = f"{site}/redirect?to={target}"
        result = await call(registry, "browser.navigate", url=url)
        assert result.is_error, result.output
        assert (
            result.output == f"cannot open {url}: blocked: 127.0.0.2 is a loopback address; {HINT}"
        )
    assert other_site.paths == []


async def test_subresources_from_a_blocked_address_are_refused(
    open_browser: Any, site: str, other_site: OtherSite
) -> None:
    registry = open_browser(allow_hosts=["127.0.0.1"])
    opened = await call(registry, "browser.navigate", url=f"{site}/embeds?from={other_site.base}")
    assert not opened.is_error, opened.output
    await _wait_for_title(registry, "fetch failed")
    await asyncio.sleep(0.5)  # give a WebSocket that slipped through the time to arrive
    assert other_site.paths == []


async def test_allow_hosts_opens_what_the_operator_wants(
    open_browser: Any, site: str, other_site: OtherSite
) -> None:
    registry = open_browser(allow_hosts=["127.0.0.0/8"])
    url = f"{site}/redirect?to={other_site.base}/secret"
    redirected = await call(registry, "browser.navigate", url=url)
    assert redirected.output == f"Opened {other_site.base}/secret (HTTP 200); title: 'Other'"
    opened = await call(registry, "browser.navigate", url=f"{site}/embeds?from={other_site.base}")
    assert not opened.is_error, opened.output
    for _ in range(100):
        if {"/pixel", "/frame", "/api", "/socket"} <= set(other_site.paths):
            break
        await asyncio.sleep(0.05)
    assert {"/secret", "/pixel", "/frame", "/api", "/socket"} <= set(other_site.paths)


async def _wait_for_title(registry: ToolRegistry, title: str) -> None:
    for _ in range(100):
        text = await call(registry, "browser.text")
        if f"\nTitle: {title}\n" in text.output:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the page title never became {title!r}: {text.output[:200]}")


async def test_the_proxy_refuses_hostile_requests_and_keeps_serving(
    site: str, other_site: OtherSite
) -> None:
    from openpista_browser.proxy import GuardProxy

    proxy = GuardProxy(HostRules.parse(["127.0.0.1"], []), connect_timeout=5)
    await proxy.start()
    host, port = proxy.address.removeprefix("http://").split(":")

    async def send(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer

    try:
        other = other_site.base.removeprefix("http://")
        refused = await send(f"CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n".encode())
        assert refused.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert b"X-Openpista-Blocked: blocked: 127.0.0.2 is a loopback address" in refused
        assert proxy.refusal("127.0.0.2") == f"blocked: 127.0.0.2 is a loopback address; {HINT}"
        hostile = [
            b"\r\n\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET file:///etc/passwd HTTP/1.1\r\n\r\n",
            b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n",
            b"CONNECT 127.0.0.1:x HTTP/1.1\r\n\r\n",
            b"GET http://127.0.0.1/ HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
        ]
        for raw in hostile:
            answer = await send(raw)
            assert b"root:" not in answer
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
        assert other_site.paths == []
        fine = await send(f"GET {site}/second HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert fine.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"All 42 checks passed" in fine
    finally:
        await proxy.close()
