"""The documented `nox --no-venv -s bench` works without the project's .venv on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_session_runs_with_the_projects_python_on_a_clean_path() -> None:
    nox = Path(sys.executable).parent / "nox"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run(
        [str(nox), "--no-venv", "-s", "bench", "--", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "No module named" not in output
    assert "usage: bench_web.py" in output
    assert "usage: run.py" in output
