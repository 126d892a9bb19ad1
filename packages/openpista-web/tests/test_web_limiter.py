"""Wrong-token throttling: a real uvicorn refuses an address after too many wrong tokens."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from openpista_web.limiter import AuthFailureLimiter, address_key
from openpista_web.testing import greeted, open_socket

Serve = Callable[..., Awaitable[Any]]
TOKEN = "test-token-Zq8vN3kL0pXr"
CLIENT = "client-0001"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def refused_status(served: Any, token: str | None, host: str = "127.0.0.1") -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(served.adapter.port, CLIENT, token, host=host):
            pass
    return refused.value.response.status_code


async def auth(served: Any, token: str, host: str = "127.0.0.1") -> httpx.Response:
    url = f"http://{host}:{served.adapter.port}/api/auth"
    async with httpx.AsyncClient() as http:
        return await http.post(url, headers={"Authorization": f"Bearer {token}"})


async def test_too_many_wrong_tokens_get_429_until_the_window_passes(
    serve_web: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    served = await serve_web(max_auth_failures=3, auth_failure_window=60)
    clock = Clock()
    served.adapter.auth_limiter.clock = clock
    for attempt in range(3):
        assert await refused_status(served, f"wrong-{attempt}") == 403
    # The 4th attempt is refused before any comparison, even with the right token.
    with pytest.raises(InvalidStatus) as refused:
        async with served.connect():
            pass
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) == 60
    assert (await auth(served, TOKEN)).status_code == 429
    clock.now += 30
    assert await refused_status(served, TOKEN) == 429
    clock.now += 30  # the window has passed: in again
    async with served.connect() as ws:
        hello, _ = await greeted(ws)
    assert hello["client_id"] == CLIENT
    assert served.inbound.empty()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("openpista"))
    assert "3 wrong tokens from 127.0.0.1" in logged
    for secret in (TOKEN, "wrong-0", "wrong-1", "wrong-2"):
        assert secret not in logged


async def test_api_auth_failures_count_too(serve_web: Serve) -> None:
    served = await serve_web(max_auth_failures=2)
    assert (await auth(served, "nope-1")).status_code == 401
    assert (await auth(served, "nope-2")).status_code == 401
    refused = await auth(served, TOKEN)
    assert refused.status_code == 429
    assert "try again later" in refused.json()["error"]
    assert await refused_status(served, TOKEN) == 429  # and they lock the socket too


async def test_another_address_is_not_affected(serve_web: Serve) -> None:
    """Listening on ``::`` (dual stack): 127.0.0.1 is locked out, ::1 is not."""
    served = await serve_web(host="::", max_auth_failures=2)
    for attempt in range(2):
        assert await refused_status(served, f"wrong-{attempt}") == 403
    assert await refused_status(served, TOKEN) == 429
    async with open_socket(served.adapter.port, CLIENT, TOKEN, host="[::1]") as ws:
        await greeted(ws)  # a success from ::1 ...
    assert await refused_status(served, TOKEN) == 429  # ... resets nothing for 127.0.0.1
    assert (await auth(served, TOKEN, host="[::1]")).status_code == 204


async def test_loopback_is_not_exempt_and_zero_turns_it_off(serve_web: Serve) -> None:
    served = await serve_web(max_auth_failures=0)
    for attempt in range(20):
        assert (await auth(served, f"wrong-{attempt}")).status_code == 401
    assert (await auth(served, TOKEN)).status_code == 204


def test_limiter_counts_per_address_and_expires() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(2, 10, clock=clock)
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 0
    clock.now += 4
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 6  # until the first failure is 10 s old
    assert limiter.retry_after("192.0.2.2") == 0
    clock.now += 6
    assert limiter.retry_after("192.0.2.1") == 0  # the first failure expired
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 4  # the second one still counts
    clock.now += 10
    assert limiter.retry_after("192.0.2.1") == 0
    assert len(limiter) == 0  # forgotten once every failure expired


def test_limiter_memory_is_bounded_oldest_dropped() -> None:
    limiter = AuthFailureLimiter(1, 60, max_addresses=100, clock=Clock())
    for n in range(1000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    assert limiter.retry_after("10.0.0.0") == 0  # the oldest were dropped
    assert limiter.retry_after("10.0.3.231") == 60  # the newest (n = 999) are kept


def test_address_keys_group_ipv6_by_64_and_unmap_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("::1") != address_key("127.0.0.1")
    assert address_key(None) == "unknown"
