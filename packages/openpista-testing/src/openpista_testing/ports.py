"""Free loopback ports for servers a test starts (or tells a daemon to start), and a
silent one that never answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def free_port(*, udp: bool = False) -> int:
    """A TCP (or UDP) port of 127.0.0.1 that nothing listens on just now."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def silent_port() -> Iterator[int]:
    """A TCP port of 127.0.0.1 that takes connections (the kernel's backlog) and never
    answers a byte: a hung server, for tests of timeouts."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        port: int = server.getsockname()[1]
        yield port
