"""Discord's 2,000-character messages: long answers cut on sensible boundaries.

Cuts go at a paragraph, else a line, else a space, else anywhere; a cut inside a fenced
code block closes the fence at the end of the part and opens it again (same language) at
the start of the next, so every part renders as code.
"""

from __future__ import annotations

import re

MESSAGE_LIMIT = 2000
_INFO_LIMIT = 32  # a fence's language tag, as repeated when the fence is reopened
_FENCE = re.compile(r"^ {0,3}(```+|~~~+)(.*)$")


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``text`` as parts of at most ``limit`` characters (one part if it fits; an empty
    text is one empty part)."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    reopen = ""
    while rest:
        rest = reopen + rest
        if len(rest) <= limit:
            parts.append(rest.rstrip("\n"))
            break
        room = limit - 4  # space for a closing "\n```"
        cut = _cut(rest, room)
        part, rest = rest[:cut], rest[cut:]
        fence = _open_fence(part)
        if fence is None:
            reopen = ""
            parts.append(part.rstrip("\n") or part)
            rest = rest.lstrip("\n")
        else:
            marker, info = fence
            parts.append(part.rstrip("\n") + "\n" + marker)
            reopen = f"{marker}{info}\n"
            rest = rest.removeprefix("\n")
    return [p for p in parts if p] or [""]


def _cut(text: str, room: int) -> int:
    """Where to end a part of at most ``room`` characters (always > 0)."""
    window = text[:room]
    floor = room // 2  # do not leave a tiny part for the sake of a nicer boundary
    for boundary in ("\n\n", "\n", " "):
        at = window.rfind(boundary)
        if at >= floor:
            return at + len(boundary)
    return room


def _open_fence(part: str) -> tuple[str, str] | None:
    """The fence (marker, info string) still open at the end of ``part``, if any."""
    open_fence: tuple[str, str] | None = None
    for line in part.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        marker, info = match.groups()
        if open_fence is None:
            open_fence = (marker, info.strip()[:_INFO_LIMIT])
        elif (
            marker.startswith(open_fence[0][0])
            and len(marker) >= len(open_fence[0])
            and not info.strip()
        ):
            open_fence = None
    return open_fence
