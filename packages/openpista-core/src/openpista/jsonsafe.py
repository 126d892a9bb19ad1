"""JSON from untrusted peers: bounded size and nesting, one error type, quiet logs.

Every network-facing parser (webhooks, WebSocket and QUIC frames, worker reports) reads its
body with :func:`loads`. Deeply nested input never reaches a recursive decoder or validator
unchecked: it becomes a :class:`JsonInputError` that the caller turns into its documented
error answer, and :func:`log_rejected` writes one rate-limited line instead of a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from openpista.quietlog import QuietLog

MAX_DEPTH = 64
"""Nesting deeper than this is refused; real payloads of every supported service stay < 20."""

REJECTIONS = QuietLog()
"""The rate limit of :func:`log_rejected`'s lines (``REJECTIONS.reset()`` starts afresh)."""


class JsonInputError(ValueError):
    """A peer sent a body that is not acceptable JSON; the message is safe to send back."""


def loads(
    data: bytes | bytearray | str, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH
) -> Any:
    """Decode ``data`` as JSON, refusing oversized, malformed and too deeply nested input.

    Raises :class:`JsonInputError` with a one-line reason; never ``RecursionError``.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonInputError(f"body too large ({len(data)} bytes, limit {max_bytes})")
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonInputError(f"JSON nested too deeply (limit {max_depth} levels)") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise JsonInputError(f"malformed JSON: {error}") from None
    if depth(value, limit=max_depth) > max_depth:
        raise JsonInputError(f"JSON nested too deeply (limit {max_depth} levels)")
    return value


def depth(value: Any, *, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of a decoded JSON value (a scalar is 0), counted without recursion.

    Stops early once ``limit`` is exceeded, returning ``limit + 1``.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        if level > limit:
            return limit + 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def log_rejected(logger: logging.Logger, source: str, error: Exception) -> None:
    """Log a refused body as one warning line, at most once a minute per ``source``.

    The line after a quiet spell says how many were refused in between.
    """
    REJECTIONS.warning(logger, source, f"{source}: refused a body: {error}")
