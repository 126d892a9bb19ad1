"""Screen capture (mss, no scrot or X extensions needed) and OCR (Tesseract via pytesseract).

Both are blocking; the tools run them in a worker thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openpista.tools import ToolError

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
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue(), image.size


def read_text(image: Image, language: str, timeout: float) -> str:
    """The text Tesseract reads in ``image``."""
    import pytesseract

    try:
        text: str = pytesseract.image_to_string(image, lang=language, timeout=timeout)
    except pytesseract.TesseractNotFoundError:
        raise ToolError(
            "OCR needs Tesseract: install the tesseract-ocr package (and tesseract-ocr-LANG "
            "for languages other than English)"
        ) from None
    except RuntimeError as exc:  # pytesseract's timeout
        raise ToolError(f"OCR did not finish within {timeout:g} s ({exc})") from None
    except pytesseract.TesseractError as exc:
        raise ToolError(f"OCR failed: {exc.message.strip() or exc}") from None
    return text.strip()
