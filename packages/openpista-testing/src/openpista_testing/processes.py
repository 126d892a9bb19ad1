"""Looking at processes from a test: whether one still runs, and PIDs a command wrote down."""

from __future__ import annotations

from pathlib import Path


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
