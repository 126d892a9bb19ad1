"""Serve an ASGI app on loopback in a background thread (for the test emulators)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def serve_in_thread(app: Any, *, name: str, port: int = 0) -> tuple[Any, threading.Thread, int]:
    """Start uvicorn for ``app`` on 127.0.0.1 (``port`` 0: any free one) in a daemon thread.

    Returns ``(server, thread, port)`` once the server accepts connections; stop it with
    ``server.should_exit = True`` and ``thread.join()``.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{name}:{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the {name} did not start")
        time.sleep(0.005)
    return server, thread, port
