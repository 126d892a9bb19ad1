"""nanobot (HKUDS' Python agent, distribution ``nanobot-ai``) measured beside openpista.

:func:`install` puts nanobot into a venv of its own (``benchmarks/.nanobot-venv``, git-ignored:
its pins would fight openpista's), once; :class:`Nanobot` configures it in a temporary HOME to
answer through the LLM emulator (its ``custom`` OpenAI-compatible provider, web tools off) and
runs its single shot, ``nanobot agent -m TEXT``, measured like openpista's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from run import run_measured

from openpista_testing.cli import KEY_VARIABLES
from openpista_testing.emulator import LlmEmulator

VERSION = "0.3.5"
"""The nanobot-ai release measured."""
VENV = Path(__file__).resolve().parent / ".nanobot-venv"
CHECK_REPLY = "nanobot heard the emulator"
"""The emulator's answer to the first run, looked for in nanobot's output."""


class Unavailable(Exception):
    """nanobot could not be installed or did not answer through the emulator (one line)."""


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (a failed command's diagnosis), or a placeholder."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def install(venv: Path = VENV) -> Path:
    """The ``nanobot`` executable of ``venv``, installing nanobot-ai :data:`VERSION` there first
    (pip's resolver, the configured index) unless it already is; :class:`Unavailable` when the
    installation fails (e.g. offline)."""
    executable = venv / "bin" / "nanobot"
    if executable.exists() and any(venv.glob(f"lib/python*/site-packages/nanobot_ai-{VERSION}.*")):
        return executable
    print(f"installing nanobot-ai {VERSION} into {venv} (once, its own venv) ...", flush=True)
    steps = (
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off",
         f"nanobot-ai=={VERSION}"],
    )  # fmt: skip
    for argv in steps:
        # pip's progress (stdout) shows; its stderr (warnings, the error) is kept for the reason.
        done = subprocess.run(argv, stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise Unavailable(f"installing nanobot-ai {VERSION} failed: {last_line(done.stderr)}")
    return executable


def config(home: Path, base_url: str) -> dict[str, object]:
    """nanobot's ``config.json`` for an emulator at ``base_url`` (an OpenAI base URL): model
    gpt-4o-mini through the ``custom`` provider, its workspace in ``home``, the web tools off."""
    return {
        "agents": {
            "defaults": {
                "workspace": str(home / "workspace"),
                "model": "gpt-4o-mini",
                "provider": "custom",
                "timezone": "UTC",
            }
        },
        "providers": {"custom": {"apiKey": "test-key", "apiBase": base_url}},
        "tools": {"web": {"enable": False}},
    }


class Nanobot:
    """nanobot's single shot in ``home`` (its HOME), answered by ``emulator``.

    Its only other connection, the download of tiktoken's encoding, goes to a proxy on
    loopback that refuses it (nanobot then counts tokens by bytes), so nothing leaves the
    machine. Close it to release that port.
    """

    def __init__(self, executable: Path, home: Path, emulator: LlmEmulator) -> None:
        self.executable = executable
        self.emulator = emulator
        (home / ".nanobot").mkdir(parents=True, exist_ok=True)
        settings = config(home, emulator.openai_base_url)
        (home / ".nanobot" / "config.json").write_text(json.dumps(settings, indent=2))
        self._refuser = socket.socket()  # bound, never listening: connections are refused
        self._refuser.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{self._refuser.getsockname()[1]}"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in KEY_VARIABLES
            and not key.startswith(("NANOBOT_", "PYTHON", "OPENPISTA_"))
            and key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        self.env.update(HOME=str(home), HTTPS_PROXY=proxy, NO_PROXY="127.0.0.1,localhost")

    def argv(self, text: str) -> list[str]:
        return [str(self.executable), "agent", "-m", text]

    def check(self, text: str) -> None:
        """One unmeasured shot (it also creates nanobot's workspace): :class:`Unavailable`
        unless its output carries the emulator's reply."""
        self.emulator.reply(CHECK_REPLY)
        done = subprocess.run(
            self.argv(text),
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or CHECK_REPLY not in done.stdout:
            raise Unavailable(f"its run failed (exit {done.returncode}): {last_line(done.stderr)}")

    def measured(self, text: str) -> tuple[float, int]:
        """Wall seconds and peak RSS (KiB) of one shot; :class:`Unavailable` when it failed or
        never asked the emulator."""
        asked = len(self.emulator.requests)
        try:
            figures = run_measured(self.argv(text), self.env)
        except SystemExit as failed:
            raise Unavailable(f"its run failed: {last_line(str(failed))}") from None
        if not any(r.path == "/v1/chat/completions" for r in self.emulator.requests[asked:]):
            raise Unavailable("its run never asked the emulator")
        return figures

    def close(self) -> None:
        self._refuser.close()


@dataclass
class Shots:
    """nanobot's measured shots of ``text``, or why it is not (or no longer) measured."""

    nanobot: Nanobot | None
    text: str = "hi"
    samples: list[tuple[float, int]] = field(default_factory=list)
    failure: str = ""

    @classmethod
    def start(cls, home: Path, emulator: LlmEmulator, text: str) -> Shots:
        """nanobot installed, configured in ``home`` and checked against ``emulator`` with one
        unmeasured shot (which also creates its workspace)."""
        try:
            nanobot = Nanobot(install(), home, emulator)
        except Unavailable as why:
            return cls(None, text, failure=str(why))
        shots = cls(nanobot, text)
        try:
            nanobot.check(text)
        except Unavailable as why:
            shots.stop(str(why))
        return shots

    def shoot(self) -> None:
        """One measured shot; a failed one ends the series."""
        if self.nanobot is None:
            return
        try:
            self.samples.append(self.nanobot.measured(self.text))
        except Unavailable as why:
            self.stop(str(why))

    def stop(self, failure: str = "") -> None:
        """No more shots (``failure``: why, when they failed)."""
        if self.nanobot is not None:
            self.nanobot.close()
            self.nanobot = None
        self.failure = self.failure or failure


def compared(openpista: tuple[float, float], nanobot: tuple[float, float]) -> str:
    """``openpista is X× faster / uses Y× less memory`` from (wall, RSS) figures of each."""
    speed, memory = nanobot[0] / openpista[0], nanobot[1] / openpista[1]
    faster = f"{speed:.1f}× faster" if speed >= 1 else f"{1 / speed:.1f}× slower"
    less = f"{memory:.1f}× less memory" if memory >= 1 else f"{1 / memory:.1f}× more memory"
    return f"openpista is {faster} / uses {less}"
