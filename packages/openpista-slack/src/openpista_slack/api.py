"""The Web API client: slack_sdk's ``AsyncWebClient`` with openpista's retry rules, and
Slack's errors as one line a user can act on.

Retries: a 429 waits its ``Retry-After`` (at most ``max_retry_after`` seconds; a longer wait
gives up), a 500/502/503/504 or a dropped connection is tried again after an exponential
backoff from ``retry_base_delay``; at most ``max_retries`` times per call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from openpista.models import ERROR_PREFIX

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from openpista_slack.settings import SlackSettings

SDK_LOGGER = "openpista_slack.sdk"
"""The logger handed to slack_sdk and slack-bolt (so that one filter keeps secrets out)."""
_TRANSIENT = frozenset({500, 502, 503, 504})
DEFAULT_API = "https://slack.com/api/"


def web_client(settings: SlackSettings) -> AsyncWebClient:
    """A Web API client for the bot token, retrying as the module docstring says."""
    from slack_sdk.web.async_client import AsyncWebClient

    return AsyncWebClient(
        token=settings.secret("bot_token"),
        base_url=settings.api_base or DEFAULT_API,
        timeout=settings.request_timeout,
        retry_handlers=retry_handlers(settings),
        logger=logging.getLogger(SDK_LOGGER),
    )


def retry_handlers(settings: SlackSettings) -> list[Any]:
    """The handlers for ``AsyncWebClient(retry_handlers=...)`` (see the module docstring)."""
    from aiohttp import ClientConnectionError, ServerDisconnectedError
    from slack_sdk.http_retry.async_handler import AsyncRetryHandler
    from slack_sdk.http_retry.builtin_interval_calculators import (
        BackoffRetryIntervalCalculator,
    )
    from slack_sdk.http_retry.request import HttpRequest
    from slack_sdk.http_retry.response import HttpResponse
    from slack_sdk.http_retry.state import RetryState

    backoff = BackoffRetryIntervalCalculator(backoff_factor=settings.retry_base_delay)
    log = logging.getLogger(__name__)

    class RateLimited(AsyncRetryHandler):
        async def _can_retry_async(
            self,
            *,
            state: RetryState,
            request: HttpRequest,
            response: HttpResponse | None = None,
            error: Exception | None = None,
        ) -> bool:
            if response is None or response.status_code != 429:
                return False
            wait = retry_after(response.headers)
            if wait > settings.max_retry_after:
                log.warning("slack: asked to wait %.0f s (more than max_retry_after)", wait)
                return False
            return True

        async def prepare_for_next_attempt_async(
            self,
            *,
            state: RetryState,
            request: HttpRequest,
            response: HttpResponse | None = None,
            error: Exception | None = None,
        ) -> None:
            state.next_attempt_requested = True
            wait = retry_after(response.headers if response is not None else {})
            log.info("slack: rate limited; retrying in %.1f s", wait)
            await asyncio.sleep(wait)
            state.increment_current_attempt()

    class Transient(AsyncRetryHandler):
        async def _can_retry_async(
            self,
            *,
            state: RetryState,
            request: HttpRequest,
            response: HttpResponse | None = None,
            error: Exception | None = None,
        ) -> bool:
            if error is not None:
                return isinstance(error, ClientConnectionError | ServerDisconnectedError)
            return response is not None and response.status_code in _TRANSIENT

    retries = settings.max_retries
    return [RateLimited(max_retry_count=retries), Transient(retries, interval_calculator=backoff)]


def retry_after(headers: dict[str, Any]) -> float:
    """The ``Retry-After`` seconds of a 429 (1 when missing or unreadable)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return 1.0
    return 1.0


def explain(method: str, error: Exception) -> str:
    """One ``❌`` line for a failed Web API call, naming the scope to add when one is
    missing (``missing_scope`` tells which in ``needed``)."""
    from slack_sdk.errors import SlackApiError

    if not isinstance(error, SlackApiError):
        return f"{ERROR_PREFIX}slack: {method} failed: {type(error).__name__}: {error}"
    data = error.response.data if isinstance(error.response.data, dict) else {}
    code = str(data.get("error") or f"HTTP {error.response.status_code}")
    if code == "missing_scope":
        needed = str(data.get("needed") or "?")
        return (
            f"{ERROR_PREFIX}slack: {method} needs the scope {needed}: add it under OAuth & "
            "Permissions > Bot Token Scopes and reinstall the app"
        )
    if code in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
        return (
            f"{ERROR_PREFIX}slack: Slack refused the token ({code}) for {method}: check "
            "[channels.slack] bot_token / app_token or SLACK_BOT_TOKEN / SLACK_APP_TOKEN"
        )
    return f"{ERROR_PREFIX}slack: {method} failed: {code}"
