"""``/login``: ``openpista auth login`` runs on the terminal while the TUI steps aside."""

from __future__ import annotations

import os
import subprocess
import sys


async def login_in_terminal(config: str | os.PathLike[str] | None, provider: str | None) -> int:
    """Run ``openpista [--config CONFIG] auth login [PROVIDER]`` (its picker) on the
    terminal, the app hidden meanwhile; returns its exit status."""
    from prompt_toolkit.application import run_in_terminal

    argv = [sys.executable, "-m", "openpista.cli"]
    argv += ["--config", os.fspath(config)] if config else []
    argv += ["auth", "login", *([provider] if provider else [])]

    def run_login() -> int:
        return subprocess.run(argv, check=False).returncode  # noqa: S603  fixed argv: this Python running openpista

    return await run_in_terminal(run_login, in_executor=True)
