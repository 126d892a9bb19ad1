"""Discord's message size: 2,000 characters."""

from __future__ import annotations

from openpista import split_message as _split

MESSAGE_LIMIT = 2000


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``text`` as messages of at most ``limit`` characters (:func:`openpista.split_message`:
    cut at a paragraph, line or space; code blocks closed and reopened)."""
    return _split(text, limit)
