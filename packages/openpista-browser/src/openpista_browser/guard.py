"""Which hosts the browser may reach: public addresses, plus what ``allow_hosts`` opens.

A host name is resolved and every address it has (IPv4 and IPv6) must be allowed; the
caller then connects to one of exactly those addresses, so an answer that changes between
the check and the connection (DNS rebinding) cannot slip in. Numeric spellings such as
``2130706433`` or ``0x7f.1`` resolve like the browser reads them (to 127.0.0.1), and IPv6
forms that carry an IPv4 address (``::ffff:127.0.0.1``, 6to4, NAT64) are judged by it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HINT = "allow it with [tools.browser] allow_hosts"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class Blocked(Exception):
    """The host may not be reached; the message says why and how to allow it."""


@dataclass(frozen=True)
class HostRules:
    """``allow_hosts`` and ``deny_hosts``: literal host names and CIDR ranges."""

    allow_names: frozenset[str]
    allow_networks: tuple[IpNetwork, ...]
    deny_names: frozenset[str]
    deny_networks: tuple[IpNetwork, ...]

    @classmethod
    def parse(cls, allow: Iterable[str], deny: Iterable[str]) -> HostRules:
        """Split entries into names and networks; a malformed entry raises ValueError."""
        allow_names, allow_networks = _split(allow)
        deny_names, deny_networks = _split(deny)
        return cls(allow_names, allow_networks, deny_names, deny_networks)

    async def resolve(self, host: str, port: int) -> list[IpAddress]:
        """The addresses of ``host`` the browser may connect to; :class:`Blocked` if none."""
        name = normalize(host)
        if name in self.deny_names:
            raise Blocked(f"blocked: {name} is listed in [tools.browser] deny_hosts")
        addresses = await _addresses(name, port)
        for address in addresses:
            if any(address in network for network in self.deny_networks):
                raise Blocked(
                    f"blocked: {name} ({address}) is in a range of [tools.browser] deny_hosts"
                )
        if name in self.allow_names:
            return addresses
        for address in addresses:
            if any(address in network for network in self.allow_networks):
                continue
            why = non_public(address)
            if why is not None:
                shown = name if _literal(name) is not None else f"{name} ({address})"
                raise Blocked(f"blocked: {shown} is {why}; {HINT}")
        return addresses


def normalize(host: str) -> str:
    """``host`` as compared with the lists: lower case, no brackets, no trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def non_public(address: IpAddress) -> str | None:
    """What kind of non-public address ``address`` is (``None``: a public one)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return non_public(embedded)
    if address in _METADATA:
        return "a cloud metadata address"
    checks: list[tuple[bool, str]] = [
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a CGNAT address"),
        (
            isinstance(address, ipaddress.IPv6Address) and address.is_private,
            "a unique-local or other private IPv6 address",
        ),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    ]
    return next((why for hit, why in checks if hit), None)


def _embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _literal(name: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


async def _addresses(name: str, port: int) -> list[IpAddress]:
    literal = _literal(name)
    if literal is not None:
        return [literal]
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise Blocked(f"cannot resolve {name}: {exc}") from None
    addresses: list[IpAddress] = []
    for _family, _type, _proto, _canon, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Blocked(f"cannot resolve {name}: no address")
    return addresses


def _split(entries: Iterable[str]) -> tuple[frozenset[str], tuple[IpNetwork, ...]]:
    names: set[str] = set()
    networks: list[IpNetwork] = []
    for entry in entries:
        value = normalize(entry)
        if not value:
            raise ValueError("an empty host entry")
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            if not _NAME.match(value):
                raise ValueError(f"{entry!r} is neither a host name nor a CIDR range") from None
            names.add(value)
    return frozenset(names), tuple(networks)
