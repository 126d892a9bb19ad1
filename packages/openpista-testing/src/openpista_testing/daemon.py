"""``openpista start`` as a real process for end-to-end tests, its output collected."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

from openpista_testing.cli import OPENPISTA, Cli

DEADLINE = 60.0
_DRAIN = 2.0  # s, for the rest of a pipe once its writer exited


class Lines:
    """The lines ``process`` writes to ``pipes`` (say its stdout and stderr), each pipe read
    by a thread as they come; ``read`` holds every line of each pipe so far."""

    def __init__(self, process: subprocess.Popen[str], *pipes: IO[str] | None) -> None:
        self.process = process
        self.read: list[list[str]] = [[] for _ in pipes]
        self._queue: queue.Queue[str] = queue.Queue()
        self._readers: list[threading.Thread] = []
        for pipe, sink in zip(pipes, self.read, strict=True):
            assert pipe is not None, "the process was not started with this pipe"
            reader = threading.Thread(target=self._pump, args=(pipe, sink), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _pump(self, pipe: IO[str], sink: list[str]) -> None:
        for line in pipe:
            sink.append(line)
            self._queue.put(line)

    def wait_for(self, needle: str, timeout: float = DEADLINE) -> str:
        """Wait until a line (of any of the pipes) contains ``needle``; return that line.
        Fails with everything read once the process exited without writing it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self.ended() and self._queue.empty():
                    break
                continue
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} never appeared; output:\n{self.output()}")

    def ended(self) -> bool:
        """Whether the process exited; then what it wrote before is read (``read`` is all,
        unless a child it left running still holds a pipe: that one is waited for 2 s)."""
        if self.process.poll() is None:
            return False
        for reader in self._readers:
            reader.join(timeout=_DRAIN)
        return True

    def output(self) -> str:
        """Everything read, pipe after pipe (the second one, stderr, so marked)."""
        return "\n--- stderr ---\n".join("".join(lines) for lines in self.read)


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
        self.lines = Lines(self.process, self.process.stdout, self.process.stderr)
        self.stdout, self.stderr = self.lines.read

    def send(self, text: str) -> None:
        """Type one line on the daemon's terminal channel."""
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def wait_for(self, needle: str, timeout: float = DEADLINE) -> str:
        """Wait until a line of stdout or stderr contains ``needle``; return that line."""
        return self.lines.wait_for(needle, timeout)

    def wait_until(self, ready: Callable[[], bool], timeout: float = DEADLINE) -> None:
        """Poll ``ready()`` (e.g. a health check) until it holds; fails with the output if
        the daemon exits or ``timeout`` passes first."""
        end = time.monotonic() + timeout
        while not ready():
            if self.lines.ended() or time.monotonic() > end:
                raise AssertionError(f"the daemon never got ready; output:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """stdout, then stderr (marked), as read so far."""
        return self.lines.output()

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
