"""The aiogram HTTP session of the channel: one malformed update cannot stall polling.

aiogram validates a whole ``getUpdates`` answer at once, so a single update it cannot parse
would fail every poll and never be confirmed: the channel would hang on it forever. This
session checks each update on its own and replaces one that does not parse with a bare
``{"update_id": N}``, which aiogram skips and confirms like any other. Imported only when the
channel starts (it imports aiogram).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiogram.client.session.aiohttp import AiohttpSession
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
        return super().check_response(bot, method, status_code, content)


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
