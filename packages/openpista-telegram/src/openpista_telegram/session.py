"""The aiogram HTTP session of the channel: one malformed update cannot stall polling, and
a 5xx is a server error whatever its body.

aiogram validates a whole ``getUpdates`` answer at once, so a single update it cannot parse
would fail every poll and never be confirmed: the channel would hang on it forever. This
session checks each update on its own and replaces one that does not parse with a bare
``{"update_id": N}``, which aiogram skips and confirms like any other.

Telegram's front end answers some 502/504 with an HTML page; aiogram would call that a
decode error, which nothing retries. Here any 5xx whose body is not a Bot API answer raises
``TelegramServerError``, retried like a JSON 500. Imported only when the channel starts (it
imports aiogram).
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import ClientDecodeError, TelegramServerError
from aiogram.methods import GetUpdates
from aiogram.types import Update
from pydantic import ValidationError

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response, TelegramMethod
    from aiogram.methods.base import TelegramType

log = logging.getLogger(__name__)


class TolerantSession(AiohttpSession):
    """An :class:`AiohttpSession` whose ``getUpdates`` survives malformed updates."""

    def check_response(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        status_code: int,
        content: str,
    ) -> Response[TelegramType]:
        if isinstance(method, GetUpdates):
            content = _without_malformed(content, bot)
        try:
            return super().check_response(bot, method, status_code, content)
        except ClientDecodeError:
            if status_code < HTTPStatus.INTERNAL_SERVER_ERROR:
                raise
            raise TelegramServerError(
                method=method, message=f"HTTP {status_code}: {_summary(content)}"
            ) from None


_TITLE = re.compile(r"<title>([^<]{1,200})</title>", re.IGNORECASE)


def _summary(content: str) -> str:
    """A few words about a body that is not a Bot API answer: an HTML page's title."""
    title = _TITLE.search(content)
    if title:
        return " ".join(title.group(1).split())
    words = " ".join(content.split())
    return (words[:80] + "…" if len(words) > 80 else words) or "empty body"


def _without_malformed(content: str, bot: Bot) -> str:
    try:
        data: Any = json.loads(content)
    except ValueError:
        return content  # aiogram reports it; the next poll asks again
    updates = data.get("result") if isinstance(data, dict) else None
    if not isinstance(updates, list):
        return content
    kept = []
    for raw in updates:
        if parse_update(raw, bot) is not None:
            kept.append(raw)
        elif isinstance(raw, dict) and isinstance(raw.get("update_id"), int):
            kept.append({"update_id": raw["update_id"]})
    data["result"] = kept
    return json.dumps(data)


def parse_update(raw: Any, bot: Bot) -> Update | None:
    """``raw`` as an aiogram :class:`Update` bound to ``bot``; ``None`` (and a warning) when
    it does not parse."""
    try:
        return Update.model_validate(raw, context={"bot": bot})
    except ValidationError as exc:
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        log.warning(
            "telegram: skipped malformed update %s (%d problems, first: %s)",
            update_id,
            exc.error_count(),
            exc.errors()[0]["msg"] if exc.errors() else "?",
        )
        return None
