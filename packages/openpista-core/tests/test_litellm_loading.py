"""litellm is imported off the event loop, also while another thread is still importing it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# A stand-in litellm whose import waits until the event loop itself says so: if the loop
# ever imports litellm while the warm-up thread is half-way through, it blocks on the import
# lock, never gives the go-ahead, and the program hangs.
SLOW_LITELLM = """
import os, time
while not os.path.exists(os.environ["GO_FILE"]):
    time.sleep(0.01)
"""

PROGRAM = """
import asyncio, os, sys
from pathlib import Path
from openpista.providers.litellm_provider import load_litellm

async def main():
    warm_up = asyncio.create_task(load_litellm())  # the daemon's warm-up
    while "litellm" not in sys.modules:  # the thread has begun importing
        await asyncio.sleep(0.01)
    turn = asyncio.create_task(load_litellm())  # the first message meanwhile
    await asyncio.sleep(0.05)
    Path(os.environ["GO_FILE"]).touch()  # runs only if the loop is free
    first, second = await asyncio.gather(warm_up, turn)
    assert first is second is sys.modules["litellm"]
    assert first.suppress_debug_info is True
    print("ok")

asyncio.run(main())
"""


def test_a_turn_during_the_warm_up_import_does_not_block_the_loop(tmp_path: Path) -> None:
    package = tmp_path / "site" / "litellm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(SLOW_LITELLM))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM)],
        env={
            "PYTHONPATH": str(tmp_path / "site"),
            "GO_FILE": str(tmp_path / "go"),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,  # a hang (the old behaviour) fails here
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
