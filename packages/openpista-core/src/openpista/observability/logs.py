"""The daemon's log: text or one JSON object per line, and one redaction filter for both.

The standard library's ``logging`` is the one choice (not structlog): every library the
daemon runs (litellm, httpx, uvicorn, aiogram, SQLAlchemy) logs through it already, so one
handler with one filter sees every line, and nothing is added to install or to import.

JSON lines carry ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and the
``session``, ``channel`` and ``request_id`` of the turn being handled (set by the gateway
with :func:`bind_turn`; ``null`` outside a turn), plus ``exception`` when there is one.

:class:`RedactingFilter` replaces secrets with ``[REDACTED]`` in the message and in the
formatted exception before any formatter sees them: every configured secret value
(provider keys, channel tokens, the metrics token, ...), and whatever looks like one
(``Authorization`` headers, ``Bearer`` tokens, ``sk-...`` keys, Telegram bot tokens,
``api_key=...``/``"token": "..."`` pairs). Channel plugins put the same filter on the
loggers of the libraries they drive with :func:`redacting_filter` (``openpista.redacting_filter``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from openpista.config import Settings

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6
"""Shorter configured values are not redacted word by word (they would blank common text)."""

_SECRET_KEY = r"(?:api[_-]?key|(?:access|refresh|id)[_-]?token|token|secret|password)"  # noqa: S105  the names of secrets, to redact them
_PATTERNS = [
    # An Authorization header, in HTTP, a dict repr or JSON: the whole value goes.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(rf"(?i)(\b(?:\w+_)?{_SECRET_KEY}[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}}]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"()(?<!\d)\d{6,12}:[A-Za-z0-9_-]{30,}"),  # a Telegram bot token (also in /bot<t>/)
]
_SECRET_NAME = re.compile(rf"(?i)(?:\w+_)?{_SECRET_KEY}")

_TURN: contextvars.ContextVar[tuple[str | None, str | None, str | None]] = contextvars.ContextVar(
    "openpista_log_turn", default=(None, None, None)
)


def bind_turn(session_id: str | None, channel_id: str | None, request_id: str | None) -> None:
    """Name the turn the current task handles in its log lines (the gateway calls this;
    each turn runs in a task of its own, so the binding ends with it)."""
    _TURN.set((session_id, channel_id, request_id))


class Redactor:
    """Replaces secrets in text: the given values, the patterns of the module docs, and
    whatever follows one of the ``after`` markers (a prefix of tokens a peer may send, e.g.
    ``"openpista.token."``) up to a space, quote, ``,`` or ``&``."""

    def __init__(self, secrets: Iterable[str] = (), *, after: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, known))) if known else None
        markers = "|".join(map(re.escape, sorted(set(after) - {""}, key=len, reverse=True)))
        self._patterns = [*_PATTERNS]
        if markers:
            self._patterns.append(re.compile(f"({markers})[^\\s\"',&}}]+"))

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        for pattern in self._patterns:
            text = pattern.sub(lambda found: found[1] + REDACTED, text)
        return text


class RedactingFilter(logging.Filter):
    """A handler or logger filter that redacts each record's message, exception and stack
    text in place; the exception is kept only as its redacted text (``exc_text``), so no
    formatter can print it unredacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: show what there is
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def redacting_filter(*secrets: str, after: Iterable[str] = ()) -> RedactingFilter:
    """A logging filter keeping ``secrets`` (values of at least ``MIN_SECRET_LENGTH``
    characters; empty ones are ignored), what looks like a secret, and the tokens after the
    ``after`` markers out of log records (see :class:`Redactor`); add it to the loggers of
    the libraries a plugin drives. Its ``redact(text)`` cleans an error text the same way."""
    return RedactingFilter(Redactor(secrets, after=after))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docs for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        session, channel, request_id = _TURN.get()
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "session": session,
            "channel": channel,
            "request_id": request_id,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value of ``settings``: its ``SecretStr`` fields, and the values of
    keys named like secrets (``token``, ``api_key``, ``secret``...) in free-form tables."""
    return [value for value in _secrets(settings) if value]


def _secrets(value: Any, name: str = "") -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for field in type(value).model_fields:
            yield from _secrets(getattr(value, field), field)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _secrets(item, str(key))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets(item, name)
    elif isinstance(value, str) and _SECRET_NAME.fullmatch(name):
        yield value


def setup_logging(
    settings: Settings, *, level: int, log_format: Literal["text", "json"] | None = None
) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to stderr, as text or JSON
    (``log_format``, else ``[logging] format``), through the redaction filter; returns the
    handler (already installed)."""
    handler = logging.StreamHandler()
    chosen = log_format or settings.logging.format
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(Redactor(configured_secrets(settings))))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
