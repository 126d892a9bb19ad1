"""Processes from a test's point of view: whether one still runs, PIDs a command wrote
down, and servers the tests start as child processes (PostgreSQL, dockerd)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def stop_process(process: subprocess.Popen[bytes], first: signal.Signals, wait: float) -> None:
    """Stop a server started with ``start_new_session=True``: send ``first`` (its orderly
    shutdown signal), and after ``wait`` seconds SIGKILL its whole process group (helpers
    it started go with it). Returns once it has exited; a process already gone is fine."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(first)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(wait)


def log_tail(path: Path, lines: int | None = None) -> str:
    """The last ``lines`` lines (all with ``None``) of a server's log file, for an error
    message; says so when there is no log."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return text if lines is None else "\n".join(text.splitlines()[-lines:])


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def read_pids(path: Path) -> list[int]:
    """The PIDs a test command appended to ``path`` so far."""
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []
