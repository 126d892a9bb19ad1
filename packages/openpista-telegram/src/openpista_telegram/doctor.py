"""``openpista doctor``: the bot token, checked online with ``getMe``."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from openpista import ConfigError
from openpista.doctor import DoctorCheck, Finding, request_json
from openpista_telegram.settings import SECTION, TOKEN_VARIABLE, TelegramSettings, parse_settings

if TYPE_CHECKING:
    from openpista import Settings

BOT_API = "https://api.telegram.org"


def token_checks(config: Settings) -> list[DoctorCheck]:
    """The token check when ``[channels.telegram]`` is enabled and valid (the channel's
    own doctor line reports an invalid table)."""
    table = config.channels.get("telegram") or {}
    if not table.get("enabled"):
        return []
    try:
        settings = parse_settings(table)
    except ConfigError:
        return []
    fix = f"check the network, or [{SECTION}] api_base (the Bot API server)"
    return [DoctorCheck("channel telegram token", partial(get_me, settings), fix)]


async def get_me(settings: TelegramSettings) -> Finding:
    """``getMe`` with the configured token: the bot's name, or why Telegram refused it."""
    base = settings.api_base or BOT_API
    status, body = await request_json("GET", f"{base}/bot{settings.secret()}/getMe")
    answer = body if isinstance(body, dict) else {}
    bot = answer.get("result")
    if status == 200 and answer.get("ok") is True and isinstance(bot, dict):
        return Finding(True, f"valid: bot @{bot.get('username')} (id {bot.get('id')})")
    description = str(answer.get("description") or "no Bot API answer")[:200]
    if status in (401, 404):  # Telegram: 401 for a revoked token, 404 for an unknown one
        return Finding(
            False,
            f"Telegram refused the token: HTTP {status} {description}",
            f"copy the token again from @BotFather (/token) into [{SECTION}] token or "
            f"${TOKEN_VARIABLE}",
        )
    return Finding(
        False,
        f"getMe failed: HTTP {status} {description}",
        f"try again later; [{SECTION}] api_base names the Bot API server",
    )
