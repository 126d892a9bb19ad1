"""Cutting an answer into the messages a channel can hold.

Every messenger caps one message (Telegram 4,096 UTF-16 units, WhatsApp 4,096 characters,
Discord 2,000, Slack about 40,000); the gateway cuts long answers with :func:`split_message`
(:meth:`openpista.channels.Capabilities.split`), so every channel is cut the same way: at a
paragraph break, else a line break, else a space, and never leaving a code block open
across two messages.
"""

from __future__ import annotations

from collections.abc import Callable

FENCE = "```"
_BREAKS = ("\n\n", "\n", " ")  # paragraph, line, word
_CLOSE = "\n" + FENCE


def split_message(text: str, limit: int, *, measure: Callable[[str], int] = len) -> list[str]:
    """``text`` as parts of at most ``limit``, as ``measure`` counts (characters by default;
    Telegram counts UTF-16 units), cut at the last paragraph break that fits, else line
    break, else space, else mid-word. A code block that has to be cut is closed at the end
    of its part and reopened, with its language, at the start of the next, so each part
    renders on its own; inside it only line breaks are dropped at a cut (indentation stays).
    Blank parts are dropped, and no part ends in white space."""
    if limit < 1:
        raise ValueError(f"a message holds at least one character, not {limit}")
    parts: list[str] = []
    rest = text
    while measure(rest) > limit:
        part, rest = _fitting_cut(rest, limit, measure)
        if part.strip():
            parts.append(part)
    if rest.strip():
        parts.append(rest.rstrip())
    return parts


def _fitting_cut(text: str, limit: int, measure: Callable[[str], int]) -> tuple[str, str]:
    """:func:`_cut` within a smaller budget while its part measures more than ``limit``
    (a measure of rendered text, escapes added, does not add up part by part)."""
    budget = limit
    while True:
        part, rest = _cut(text, budget, measure)
        over = measure(part) - limit
        if over <= 0 or budget == 1:
            return part, rest
        budget = max(1, budget - over)


def _cut(text: str, limit: int, measure: Callable[[str], int]) -> tuple[str, str]:
    """The first part of ``text`` and what is left to send after it."""
    cut = _cut_point(text, limit, measure)
    fence = _open_fence(text[:cut])
    if fence and measure(_CLOSE) < limit:
        cut = _cut_point(text, limit - measure(_CLOSE), measure)
        fence = _open_fence(text[:cut])
    reopened_fits = measure(fence) + 2 + measure(_CLOSE) <= limit  # opener, a char, close
    if not fence or not reopened_fits or cut <= len(fence) + 1:
        return text[:cut].rstrip(), text[cut:].lstrip("\n ")
    return text[:cut].rstrip("\n") + _CLOSE, f"{fence}\n{text[cut:].lstrip(chr(10))}"


def _cut_point(text: str, limit: int, measure: Callable[[str], int]) -> int:
    """Where to cut ``text`` for a part within ``limit``: the last break that fits (not
    inside the opening line of a block reopened at its start), else as much as fits."""
    head = _prefix(text, limit, measure)
    start = text.find("\n") + 1 if text.startswith(FENCE) else 0
    if start >= len(head) - 1:
        start = 0
    for mark in _BREAKS:
        at = head.rfind(mark)
        if at > start:
            return at
    return max(len(head), 1)


def _open_fence(text: str) -> str:
    """The opening line (```` ```lang ````) of the code block still open at the end of
    ``text``; ``""`` when none is."""
    opener = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(FENCE):
            opener = "" if opener else stripped
    return opener


def _prefix(text: str, limit: int, measure: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` that ``measure`` finds within ``limit``."""
    if measure is len:
        return text[:limit]
    low, high = 0, min(len(text), limit * 2)
    while low < high:  # ``measure`` grows with the prefix: bisect its length
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]
