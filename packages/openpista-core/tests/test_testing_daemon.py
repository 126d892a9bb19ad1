"""openpista_testing.daemon's process helpers, on real subprocesses: lines of several pipes
waited for, and a failed start reported with the daemon's own output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon, Lines

TALKER = """
import sys
print("one on stdout", flush=True)
print("two on stderr", file=sys.stderr, flush=True)
sys.stdin.read()
print("bye", flush=True)
"""


def test_lines_of_both_pipes_are_waited_for_and_kept() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", TALKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(process, process.stdout, process.stderr)
        assert lines.wait_for("two") == "two on stderr\n"
        assert process.stdin is not None
        process.stdin.close()
        assert lines.wait_for("bye") == "bye\n"
        process.wait(timeout=30)
        with pytest.raises(AssertionError, match="'never' never appeared") as missing:
            lines.wait_for("never")  # the process is gone: no waiting out the timeout
        assert "one on stdout\nbye\n\n--- stderr ---\ntwo on stderr\n" in str(missing.value)
        assert lines.read == [["one on stdout\n", "bye\n"], ["two on stderr\n"]]
    finally:
        process.kill()
        process.wait()


def test_a_daemon_that_exits_before_it_is_ready_fails_with_its_output(tmp_path: Path) -> None:
    daemon = Daemon(Cli.isolated(tmp_path), "--no-such-option")
    try:
        with pytest.raises(AssertionError, match="the daemon never got ready") as failed:
            daemon.wait_until(lambda: False)
        assert "No such option" in str(failed.value)
        assert daemon.process.returncode == 2
    finally:
        daemon.kill()
