"""``openpista doctor``: the bot token (``auth.test``) and, in Socket Mode, the app-level
token (``apps.connections.open``: a connection URL that expires unused), checked online."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from openpista.doctor import DoctorCheck, Finding, enabled_channel, request_json
from openpista_slack.api import DEFAULT_API
from openpista_slack.settings import (
    APP_TOKEN_VARIABLE,
    BOT_TOKEN_VARIABLE,
    SECTION,
    SlackSettings,
    parse_settings,
)

if TYPE_CHECKING:
    from openpista import Settings

REFUSED = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked"})


def token_checks(config: Settings) -> list[DoctorCheck]:
    """The token checks when ``[channels.slack]`` is enabled and valid (the channel's own
    doctor line reports an invalid table)."""
    settings = enabled_channel(config, "slack", parse_settings)
    if settings is None:
        return []
    fix = f"check the network, or [{SECTION}] api_base"
    checks = [DoctorCheck("channel slack bot token", partial(call, settings, bot=True), fix)]
    if settings.mode == "socket":
        checks.append(
            DoctorCheck("channel slack app token", partial(call, settings, bot=False), fix)
        )
    return checks


async def call(settings: SlackSettings, *, bot: bool) -> Finding:
    """``auth.test`` with the bot token, or ``apps.connections.open`` with the app token:
    who the token is, or why Slack refused it."""
    method = "auth.test" if bot else "apps.connections.open"
    option, variable = (
        ("bot_token", BOT_TOKEN_VARIABLE) if bot else ("app_token", APP_TOKEN_VARIABLE)
    )
    base = settings.api_base or DEFAULT_API
    status, body = await request_json(
        "POST",
        f"{base.rstrip('/')}/{method}",
        headers={"Authorization": f"Bearer {settings.secret(option)}"},
    )
    answer: dict[str, Any] = body if isinstance(body, dict) else {}
    if answer.get("ok") is True:
        who = f"bot {answer.get('user')} in {answer.get('team')}" if bot else "Socket Mode open"
        return Finding(True, f"valid: {who}")
    error = str(answer.get("error") or f"HTTP {status}, no Web API answer")[:200]
    if error in REFUSED:
        page = "OAuth & Permissions" if bot else "Basic Information, App-Level Tokens"
        return Finding(
            False,
            f"Slack refused the token: {method} {error}",
            f"copy it again from the app's {page} page into [{SECTION}] {option} or ${variable}",
        )
    return Finding(
        False,
        f"{method} failed: {error}",
        f"see the error above (a missing scope: add it and reinstall the app); [{SECTION}] "
        "api_base names the Web API",
    )
