"""``openpista doctor``: the bot token, checked online with ``getMe``, and in webhook mode
the webhook Telegram posts to (``getWebhookInfo``: the URL and its last delivery error)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from openpista.doctor import DoctorCheck, Finding, enabled_channel, request_json
from openpista_telegram.settings import SECTION, TOKEN_VARIABLE, TelegramSettings, parse_settings

if TYPE_CHECKING:
    from openpista import Settings

BOT_API = "https://api.telegram.org"


def token_checks(config: Settings) -> list[DoctorCheck]:
    """The token check when ``[channels.telegram]`` is enabled and valid (the channel's
    own doctor line reports an invalid table)."""
    settings = enabled_channel(config, "telegram", parse_settings)
    if settings is None:
        return []
    fix = f"check the network, or [{SECTION}] api_base (the Bot API server)"
    checks = [DoctorCheck("channel telegram token", partial(get_me, settings), fix)]
    if settings.mode == "webhook":
        checks.append(DoctorCheck("channel telegram webhook", partial(webhook, settings), fix))
    return checks


async def get_me(settings: TelegramSettings) -> Finding:
    """``getMe`` with the configured token: the bot's name, or why Telegram refused it."""
    status, bot = await _call(settings, "getMe")
    if isinstance(bot, dict):
        return Finding(True, f"valid: bot @{bot.get('username')} (id {bot.get('id')})")
    return _refused(status, str(bot), "getMe")


async def webhook(settings: TelegramSettings) -> Finding:
    """``getWebhookInfo``: whether Telegram posts to ``webhook_url``, and its last error."""
    status, info = await _call(settings, "getWebhookInfo")
    if not isinstance(info, dict):
        return _refused(status, str(info), "getWebhookInfo")
    wanted, current = settings.webhook_url, str(info.get("url") or "")
    if current != wanted:
        has = f"Telegram posts to {current}" if current else "no webhook is set"
        return Finding(None, f"{has}; `openpista start` sets {wanted}")
    error = " ".join(str(info.get("last_error_message") or "").split())[:200]
    if error:
        return Finding(
            False,
            f"Telegram's last delivery to {wanted} failed: {error}",
            f"make {wanted} reach [{SECTION}] webhook_host:webhook_port (the reverse proxy "
            "or tunnel, a valid TLS certificate)",
        )
    pending = info.get("pending_update_count", 0)
    return Finding(True, f"Telegram posts to {wanted} ({pending} update(s) pending)")


async def _call(settings: TelegramSettings, method: str) -> tuple[int, object]:
    """A Bot API call: its status and ``result``, or the error's description (a str)."""
    base = settings.api_base or BOT_API
    status, body = await request_json("GET", f"{base}/bot{settings.secret('token')}/{method}")
    answer = body if isinstance(body, dict) else {}
    if status == 200 and answer.get("ok") is True and "result" in answer:
        return status, answer["result"]
    return status, str(answer.get("description") or "no Bot API answer")[:200]


def _refused(status: int, description: str, method: str) -> Finding:
    if status in (401, 404):  # Telegram: 401 for a revoked token, 404 for an unknown one
        return Finding(
            False,
            f"Telegram refused the token: HTTP {status} {description}",
            f"copy the token again from @BotFather (/token) into [{SECTION}] token or "
            f"${TOKEN_VARIABLE}",
        )
    return Finding(
        False,
        f"{method} failed: HTTP {status} {description}",
        f"try again later; [{SECTION}] api_base names the Bot API server",
    )
