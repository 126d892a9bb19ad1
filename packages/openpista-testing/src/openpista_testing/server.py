"""Serve an ASGI app on loopback in a background thread (for the test emulators)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self


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


class ThreadedServer:
    """Base of the test emulators: :meth:`asgi_app` served on 127.0.0.1 in a daemon thread.

    Use as a context manager (``with Emulator() as emu:``) or call :meth:`start` and
    :meth:`stop`. ``name`` names the thread and start-up errors.
    """

    name = "emulator"

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def asgi_app(self) -> Any:
        """The starlette application to serve."""
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The port served on (after :meth:`start`)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        """Serve in a background thread (once); returns self."""
        if self._thread is None:
            self._server, self._thread, self._port = serve_in_thread(
                self.asgi_app(), name=self.name, port=self._port
            )
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
