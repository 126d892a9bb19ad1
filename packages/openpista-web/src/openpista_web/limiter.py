"""Wrong-token throttling: after too many failed sign-ins an address is refused for a while.

Each client address (IPv6 grouped by its /64, since one host usually owns a whole /64) keeps
the times of its recent failures. With ``max_failures`` failures inside ``window`` seconds,
further attempts from it are refused (HTTP 429) without comparing any token, until the
oldest of those failures is ``window`` seconds old. Successes reset nothing; failures simply
expire. At most ``max_addresses`` addresses are remembered: the one that failed longest ago
is forgotten first, so a flood of addresses cannot exhaust memory.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_ADDRESSES = 4096


def address_key(host: str | None) -> str:
    """The key an address is counted under: IPv4 as is, IPv6 by its /64, else the text."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AuthFailureLimiter:
    """Counts failed sign-ins per client address; ``max_failures = 0`` turns it off.

    ``clock`` (seconds, monotonic) can be replaced, e.g. by tests.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, host: str | None) -> int:
        """Whole seconds until ``host`` may try again; ``0`` when it may try now."""
        if self.max_failures <= 0:
            return 0
        key = address_key(host)
        times = self._failures.get(key)
        if times is None:
            return 0
        now = self.clock()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        if len(times) < self.max_failures:
            return 0
        return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, host: str | None) -> None:
        """Record one failed attempt from ``host``."""
        if self.max_failures <= 0:
            return
        key = address_key(host)
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
        times.append(self.clock())
        self._failures[key] = times  # most recent failure last
        if len(times) == self.max_failures:
            log.warning(
                "web channel: %d wrong tokens from %s within %g s; refusing it for a while",
                self.max_failures,
                key,
                self.window,
            )
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        """How many addresses are remembered."""
        return len(self._failures)
