"""Cutting replies to Telegram's message size, which counts UTF-16 code units."""

from __future__ import annotations

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
_BREAKS = ("\n\n", "\n", " ")  # paragraph, line, word


def utf16_length(text: str) -> int:
    """Length as Telegram counts it (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``text`` as parts of at most ``limit`` UTF-16 units, cut at the last paragraph break,
    else line break, else space that fits, else mid-word; blank parts are dropped."""
    parts: list[str] = []
    rest = text
    while utf16_length(rest) > limit:
        head = _prefix(rest, limit)
        cut = next((head.rfind(b) for b in _BREAKS if head.rfind(b) > 0), max(len(head), 1))
        part, rest = rest[:cut], rest[cut:].lstrip("\n ")
        if part.strip():
            parts.append(part.rstrip())
    if rest.strip():
        parts.append(rest)
    return parts


def _prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:index]
    return text
