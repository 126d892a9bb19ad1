"""The X11 clipboard through xclip (or xsel when xclip is missing)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from openpista.tools import ToolError
from openpista_desktop.helpers import run_helper

_READ = {
    "xclip": ["xclip", "-selection", "clipboard", "-out"],
    "xsel": ["xsel", "--clipboard", "--output"],
}
_WRITE = {
    "xclip": ["xclip", "-selection", "clipboard", "-in"],
    "xsel": ["xsel", "--clipboard", "--input"],
}
EMPTY_MARKERS = ("target STRING not available", "target UTF8_STRING not available")


def _tool() -> str:
    for name in ("xclip", "xsel"):
        if shutil.which(name):
            return name
    raise ToolError("the clipboard needs xclip or xsel: install one of them")


async def read_clipboard(env: Mapping[str, str], seconds: float) -> str | None:
    """The clipboard's text, ``None`` when it is empty."""
    tool = _tool()
    done = await run_helper(_READ[tool], env, seconds)
    if done.exit_code != 0:
        if any(marker in done.stderr for marker in EMPTY_MARKERS):
            return None
        raise ToolError(f"cannot read the clipboard: {done.stderr or f'{tool} failed'}")
    return done.stdout or None


async def write_clipboard(text: str, env: Mapping[str, str], seconds: float) -> None:
    """Put ``text`` on the clipboard (a background xclip/xsel keeps serving it)."""
    tool = _tool()
    done = await run_helper(_WRITE[tool], env, seconds, stdin=text)
    if done.exit_code != 0:
        raise ToolError(f"cannot write the clipboard: {done.stderr or f'{tool} failed'}")
