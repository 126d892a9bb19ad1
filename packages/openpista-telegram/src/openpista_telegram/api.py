"""Calling the Bot API: retries (429 ``retry_after``, 5xx and network errors with backoff);
the loggers that may print the bot token (kept out by the adapter's redacting filter)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from openpista.config import home_dir
from openpista.files import write_private

log = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_BACKOFF = 30.0
# aiogram's loggers that may print a request's error (and so, in some errors, its URL).
AIOGRAM_LOGGERS = ("aiogram.dispatcher", "aiogram.event", "aiogram.middlewares")


class Retrying:
    """Runs Bot API calls with retries: a 429 waits its ``retry_after`` (when it is at most
    ``max_retry_after``), 5xx and network failures back off exponentially from
    ``base_delay``; anything else (400, 401, 403, ...) is raised at once."""

    def __init__(self, max_retries: int, base_delay: float, max_retry_after: float) -> None:
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_retry_after = max_retry_after

    async def call(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        """``await make()``, retried as described; ``what`` names the call in logs."""
        from aiogram.exceptions import (
            TelegramNetworkError,
            TelegramRetryAfter,
            TelegramServerError,
        )
        from tenacity import (
            AsyncRetrying,
            RetryCallState,
            retry_if_exception,
            stop_after_attempt,
        )

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, TelegramRetryAfter):
                return exc.retry_after <= self.max_retry_after
            return isinstance(exc, TelegramServerError | TelegramNetworkError)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TelegramRetryAfter):
                return float(exc.retry_after)
            return float(min(self.base_delay * 2 ** (state.attempt_number - 1), _MAX_BACKOFF))

        def report(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning("telegram %s failed (%s); retrying in %.1f s", what, _brief(exc), delay)

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            wait=wait,
            stop=stop_after_attempt(self.max_retries + 1),
            before_sleep=report,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await make()
        raise AssertionError("unreachable: tenacity re-raises the last failure")


def _brief(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc else "?"


def bot_info_path() -> Path:
    """Where the daemon remembers the bot's username (for ``openpista telegram pair``)."""
    return home_dir() / "telegram" / "bot.json"


def save_bot_info(bot_id: int, username: str | None) -> None:
    """Remember who the bot is, so that commands need no network to name it."""
    try:
        path = bot_info_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, json.dumps({"id": bot_id, "username": username}))
    except OSError as exc:
        log.warning("cannot save the bot's name to %s: %s", bot_info_path(), exc)


def load_bot_info() -> dict[str, Any]:
    """What :func:`save_bot_info` stored (empty when the daemon never ran)."""
    try:
        data = json.loads(bot_info_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
