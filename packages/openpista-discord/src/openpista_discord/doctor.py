"""``openpista doctor``: the bot token, checked online with ``GET /users/@me``."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from openpista.doctor import DoctorCheck, Finding, enabled_channel, request_json
from openpista_discord.settings import SECTION, TOKEN_VARIABLE, DiscordSettings, parse_settings

if TYPE_CHECKING:
    from openpista import Settings


def token_checks(config: Settings) -> list[DoctorCheck]:
    """The token check when ``[channels.discord]`` is enabled and valid (the channel's own
    doctor line reports an invalid table)."""
    settings = enabled_channel(config, "discord", parse_settings)
    if settings is None:
        return []
    fix = f"check the network, or [{SECTION}] api_base"
    return [DoctorCheck("channel discord token", partial(users_me, settings), fix)]


async def users_me(settings: DiscordSettings) -> Finding:
    """``GET /users/@me`` as the bot: its name, or why Discord refused the token."""
    status, body = await request_json(
        "GET",
        f"{settings.rest_base}/users/@me",
        headers={"Authorization": f"Bot {settings.secret('token')}"},
    )
    answer = body if isinstance(body, dict) else {}
    if status == 200 and "id" in answer:
        return Finding(True, f"valid: bot {answer.get('username')} (id {answer['id']})")
    message = str(answer.get("message") or "no Discord API answer")[:200]
    if status == 401:
        return Finding(
            False,
            f"Discord refused the token: HTTP 401 {message}",
            f"reset the token in the Developer Portal (Bot -> Reset Token) and put it in "
            f"[{SECTION}] token or ${TOKEN_VARIABLE}",
        )
    return Finding(
        False,
        f"GET /users/@me failed: HTTP {status} {message}",
        f"try again later; [{SECTION}] api_base names the API server",
    )
