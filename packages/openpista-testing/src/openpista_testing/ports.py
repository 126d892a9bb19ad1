"""Free loopback ports for servers a test starts (or tells a daemon to start)."""

from __future__ import annotations

import socket


def free_port(*, udp: bool = False) -> int:
    """A TCP (or UDP) port of 127.0.0.1 that nothing listens on just now."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
