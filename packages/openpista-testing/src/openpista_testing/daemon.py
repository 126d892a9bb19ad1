"""``openpista start`` as a real process for end-to-end tests, its output collected."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
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


class ServingDaemons:
    """``openpista start --no-terminal`` processes of ``cli`` serving ``channels`` (a
    channel plugin's end-to-end tests); :meth:`close` kills those still running."""

    def __init__(self, cli: Cli, channels: Sequence[str]) -> None:
        self.cli = cli
        self.channels = list(channels)
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, cli: Cli | None = None, ready: Callable[[], bool] = lambda: True
    ) -> subprocess.Popen[str]:
        """Start a daemon (of ``cli``, default the one given at creation); returns once
        ``openpista status`` lists exactly the channels and ``ready()`` holds (e.g. the
        emulator saw it log in)."""
        cli = cli or self.cli
        process = subprocess.Popen(
            [str(OPENPISTA), "start", "--no-terminal"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli.env,
        )
        self.started.append(process)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            status = cli("status", "--json")
            if status.returncode == 0 and ready():
                assert json.loads(status.stdout)["channels"] == self.channels
                return process
            if process.poll() is not None:
                raise AssertionError(f"the daemon exited: {process.communicate()}")
            time.sleep(0.2)
        raise AssertionError("the daemon never reported running")

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


def stop_daemon(process: subprocess.Popen[str]) -> str:
    """SIGTERM ``process`` (a daemon of :class:`ServingDaemons`); returns its stderr once
    it exited, which must be with status 0."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, stderr
    return stderr
