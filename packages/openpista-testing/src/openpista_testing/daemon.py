"""``openpista start`` as a real process for end-to-end tests, its output collected."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from typing import Any

from openpista_testing.cli import OPENPISTA, Cli

DEADLINE = 60.0


class Daemon:
    """A running ``openpista start ARGS`` of ``cli``, stdin open, stdout/stderr collected."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(OPENPISTA), "start", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli.env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        streams = ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        for stream, sink in streams:
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            self.lines.put(line)

    def send(self, text: str) -> None:
        """Type one line on the daemon's terminal channel."""
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def wait_for(self, needle: str, timeout: float = DEADLINE) -> str:
        """Wait until a line of stdout or stderr contains ``needle``; return that line."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} never appeared; output:\n{self.output()}")

    def output(self) -> str:
        return "".join(self.stdout) + "\n--- stderr ---\n" + "".join(self.stderr)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the daemon and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=DEADLINE)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)
