"""Screen capture (mss, no scrot or X extensions needed) and OCR (the ``tesseract`` program).

Capture and scaling are blocking; the tools run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openpista.tools import ToolError, run_process, tool_environment

if TYPE_CHECKING:
    from PIL.Image import Image

Region = tuple[int, int, int, int]
"""``(x, y, width, height)`` in screen pixels."""


@dataclass(frozen=True)
class Capture:
    """A grabbed screen area: the picture and where it came from."""

    image: Image
    screen: tuple[int, int]
    region: Region


def grab(display: str, region: Region | None = None) -> Capture:
    """The whole screen of ``display`` (all monitors), or ``region`` of it."""
    import mss
    from PIL import Image as PilImage

    try:
        with mss.MSS(display=display) as grabber:
            whole = grabber.monitors[0]
            screen = (whole["width"], whole["height"])
            area = region or (whole["left"], whole["top"], *screen)
            _check_region(area, screen)
            x, y, width, height = area
            shot = grabber.grab({"left": x, "top": y, "width": width, "height": height})
    except ToolError:
        raise
    except Exception as exc:  # mss raises its own errors when X refuses
        raise ToolError(f"cannot capture the screen of display {display}: {exc}") from None
    image = PilImage.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
    return Capture(image=image, screen=screen, region=area)


def _check_region(region: Region, screen: tuple[int, int]) -> None:
    x, y, width, height = region
    if width <= 0 or height <= 0:
        raise ToolError(f"region {list(region)}: width and height must be positive")
    if x < 0 or y < 0 or x + width > screen[0] or y + height > screen[1]:
        raise ToolError(
            f"region {list(region)} is outside the screen ({screen[0]}x{screen[1]}); "
            "give [x, y, width, height] inside it"
        )


def to_png(image: Image, max_width: int) -> tuple[bytes, tuple[int, int]]:
    """``image`` as PNG, scaled down (aspect kept) to at most ``max_width`` pixels wide."""
    from PIL import Image as PilImage

    if max_width and image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), PilImage.Resampling.LANCZOS)
    return _encode_png(image), image.size


async def read_text(image: Image, language: str, time_limit: float) -> str:
    """The text Tesseract reads in ``image``.

    ``tesseract`` runs as a tool program: scrubbed environment (openpista's keys and tokens
    are not passed on), bounded output, killed with its process group after ``time_limit`` seconds.
    """
    png = await asyncio.to_thread(_encode_png, image)
    argv = ["tesseract", "stdin", "stdout", "-l", language]
    try:
        result = await run_process(argv, stdin=png, timeout=time_limit, env=tool_environment())
    except OSError:
        raise ToolError(
            "OCR needs Tesseract: install the tesseract-ocr package (and tesseract-ocr-LANG "
            "for languages other than English)"
        ) from None
    if result.timed_out:
        raise ToolError(f"OCR did not finish within {time_limit:g} s")
    if result.exit_code != 0:
        reason = result.stderr.render().strip().splitlines()
        raise ToolError(f"OCR failed: {reason[-1] if reason else f'exit code {result.exit_code}'}")
    return result.stdout.render().strip()


def _encode_png(image: Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
