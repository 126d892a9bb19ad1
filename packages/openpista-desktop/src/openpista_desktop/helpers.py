"""Run the small desktop programs (xclip, xsel, notify-send) with a timeout.

Their output goes to temporary files, not pipes: ``xclip -i`` forks a child that keeps
serving the clipboard and would hold a pipe open forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openpista.tools import ToolError


@dataclass(frozen=True)
class Finished:
    """Exit code and output of a helper program."""

    exit_code: int
    stdout: str
    stderr: str


async def run_helper(
    argv: Sequence[str],
    env: Mapping[str, str],
    seconds: float,
    stdin: str | None = None,
) -> Finished:
    """Run ``argv``; a ToolError when it cannot start or does not exit within ``seconds``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env),
            )
        except FileNotFoundError:
            raise ToolError(f"{argv[0]} is not installed") from None
        try:
            if stdin is not None and process.stdin is not None:
                process.stdin.write(stdin.encode())
                with contextlib.suppress(ConnectionError):
                    await process.stdin.drain()
                process.stdin.close()
            code = await asyncio.wait_for(process.wait(), seconds)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ToolError(f"{argv[0]} did not finish within {seconds:g} s") from None
        out.seek(0)
        err.seek(0)
        return Finished(
            code,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace").strip(),
        )
