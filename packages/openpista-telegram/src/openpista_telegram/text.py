"""Telegram's message sizes, which count UTF-16 code units."""

from __future__ import annotations

from openpista import split_message as _split

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024


def utf16_length(text: str) -> int:
    """Length as Telegram counts it (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``text`` as messages of at most ``limit`` UTF-16 units (:func:`openpista.split_message`)."""
    return _split(text, limit, measure=utf16_length)
