"""``openpista doctor``: the access token, checked online by reading each configured
business phone number (``GET /{version}/{phone_number_id}``, the cheapest authenticated
Graph call that also proves the token may use that number)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from openpista.doctor import DoctorCheck, Finding, enabled_channel, request_json
from openpista_whatsapp.settings import WhatsAppSettings, load_whatsapp_config

if TYPE_CHECKING:
    from openpista import Settings

SECTION = WhatsAppSettings.section
FIELDS = "display_phone_number,verified_name"


def token_checks(config: Settings) -> list[DoctorCheck]:
    """One check per phone number when ``[channels.whatsapp]`` is enabled and valid (the
    channel's own doctor line reports an invalid table)."""
    settings = enabled_channel(config, "whatsapp", load_whatsapp_config)
    if settings is None:
        return []
    fix = f"check the network, or [{SECTION}] base_url"
    return [
        DoctorCheck(
            f"channel whatsapp number {number.phone_number_id}",
            partial(phone_number, settings, number.phone_number_id),
            fix,
        )
        for number in settings.numbers
    ]


async def phone_number(settings: WhatsAppSettings, number: str) -> Finding:
    """Read phone number ``number`` with the access token: its display number, or why
    Graph refused."""
    status, body = await request_json(
        "GET",
        f"{settings.base_url}/{settings.graph_api_version}/{number}?fields={FIELDS}",
        headers={"Authorization": f"Bearer {settings.secret('access_token')}"},
    )
    answer: dict[str, Any] = body if isinstance(body, dict) else {}
    if status == 200 and str(answer.get("id")) == number:
        shown = answer.get("display_phone_number")
        return Finding(True, f"token valid for {shown} ({answer.get('verified_name')})")
    raw = answer.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    message = str(error.get("message") or "no Graph API answer")[:200]
    detail = f"HTTP {status} (code {error.get('code')}): {message}"
    if status == 401 or error.get("code") == 190:
        return Finding(
            False,
            f"Meta refused the access token: {detail}",
            f"create a System User token with whatsapp_business_messaging and put it in "
            f"[{SECTION}] access_token or $WHATSAPP_ACCESS_TOKEN",
        )
    if error.get("code") == 100:
        return Finding(
            False,
            f"phone number {number} is not reachable with this token: {detail}",
            f"copy the Phone number ID (not the number) from the app's API Setup page into "
            f"[{SECTION}] phone_number_id, and give the token's System User that account",
        )
    return Finding(False, f"reading phone number {number} failed: {detail}", "try again later")
