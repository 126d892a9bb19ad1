"""The memory store's errors, and the checks of its input: both backends reject the same
input, before anything is written (SQLite ignores VARCHAR lengths; PostgreSQL cannot store
NUL characters)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.exc import DBAPIError

from openpista.memory.tables import (
    CHANNEL_ID_MAX_LENGTH,
    SESSION_ID_MAX_LENGTH,
    TOOL_NAME_MAX_LENGTH,
)


class MemoryStoreError(Exception):
    """The memory store cannot do what was asked; the message says why."""


class SessionNotFoundError(MemoryStoreError):
    """The session id names no stored session."""


def describe(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement and parameter dump (which
    may hold a megabyte of message content)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return f"{type(exc).__name__}: {exc}".strip()


def check_session_id(session_id: object) -> str:
    """``session_id`` if it is a storable session id."""
    return _check_identifier(session_id, "session id", SESSION_ID_MAX_LENGTH)


def check_channel_id(channel_id: object) -> str:
    """``channel_id`` if it is a storable channel id (``telegram:42``)."""
    return _check_identifier(channel_id, "channel id", CHANNEL_ID_MAX_LENGTH)


def check_tool_name(tool: object) -> str:
    """``tool`` if it is a storable tool name."""
    return _check_identifier(tool, "tool name", TOOL_NAME_MAX_LENGTH)


def check_limit(limit: object) -> int:
    """``limit`` if it is a positive integer."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise MemoryStoreError(f"limit must be a positive integer, not {limit!r}")
    return limit


def check_choice(value: object, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise MemoryStoreError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value


def check_arguments(arguments: object) -> dict[str, Any]:
    """``arguments`` (of a tool call) if they are storable as JSON."""
    if not isinstance(arguments, dict):
        raise MemoryStoreError(f"tool arguments must be a dict, not {type(arguments).__name__}")
    try:
        # Stored as escaped ASCII JSON: any JSON-able value is storable, NUL included.
        json.dumps(arguments, allow_nan=False)  # PostgreSQL's json has no NaN or Infinity
    except (TypeError, ValueError, RecursionError) as exc:
        raise MemoryStoreError(f"tool arguments are not storable as JSON: {exc}") from None
    return arguments


def check_detail(detail: object) -> str:
    """``detail`` (of a tool decision) if it is storable text."""
    if not isinstance(detail, str):
        raise MemoryStoreError(f"decision detail must be a string, not {type(detail).__name__}")
    check_text(detail, "decision detail")
    return detail


def check_text(value: str, what: str) -> None:
    """Refuse text that one of the databases cannot store: NUL, lone surrogates."""
    if "\x00" in value:
        raise MemoryStoreError(
            f"{what} contains a NUL character (at {value.index(chr(0))}), which the database "
            "cannot store; strip or escape it first"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MemoryStoreError(
            f"{what} is not valid Unicode text (a lone surrogate at {exc.start})"
        ) from None


def _check_identifier(value: object, what: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise MemoryStoreError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise MemoryStoreError(f"{what} must not be empty")
    if len(value) > max_length:
        raise MemoryStoreError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise MemoryStoreError(f"{what} {value!r} contains control characters")
    check_text(value, what)
    return value
