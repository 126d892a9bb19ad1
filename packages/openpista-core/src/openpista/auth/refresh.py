"""Keep OAuth credentials fresh: refresh 5 minutes before expiry, one refresh per provider."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx

from openpista.auth.credentials import AuthError, Credential, CredentialStore
from openpista.auth.oauth import refresh_tokens
from openpista.auth.providers import oauth_provider

if TYPE_CHECKING:
    from openpista.config import Settings

log = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0  # seconds before expiry


class Refresher:
    """Hands out fresh credentials; concurrent callers for one provider share one refresh."""

    def __init__(
        self,
        store: CredentialStore | None = None,
        settings: Settings | None = None,
        *,
        margin: float = REFRESH_MARGIN,
        timeout: float = 30.0,
    ) -> None:
        self.store = store or CredentialStore()
        self.settings = settings
        self.margin = margin
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}

    async def fresh_credential(self, provider: str) -> Credential | None:
        """The stored credential of ``provider``, refreshed first when it expires soon.

        ``None`` when nothing is stored. Raises :class:`AuthError` (telling the user to log
        in again) when the refresh fails.
        """
        credential = self.store.get(provider)
        if credential is None or not self._stale(credential):
            return credential
        lock = self._locks.setdefault(provider, asyncio.Lock())
        async with lock:
            # Another task (or process) may have refreshed while this one waited.
            credential = self.store.get(provider)
            if credential is None or not self._stale(credential):
                return credential
            return await self._refresh(provider, credential)

    def _stale(self, credential: Credential) -> bool:
        return credential.kind == "oauth" and credential.expires_within(self.margin)

    async def _refresh(self, provider: str, credential: Credential) -> Credential:
        again = f"log in again with `openpista auth login {provider}`"
        table = oauth_provider(provider, self.settings)
        if table is None or not credential.refresh_token:
            raise AuthError(
                f"{provider}: the stored login has expired and cannot be refreshed; {again}"
            )
        log.info("%s: refreshing the access token", provider)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                fresh = await refresh_tokens(table, credential, client)
        except AuthError as exc:
            raise AuthError(f"{provider}: the token refresh failed ({exc}); {again}") from None
        self.store.set(provider, fresh)
        return fresh


_default: Refresher | None = None


async def fresh_credential(provider: str, settings: Settings | None = None) -> Credential | None:
    """:meth:`Refresher.fresh_credential` on the process-wide refresher (default store)."""
    global _default
    if _default is None or (settings is not None and _default.settings is not settings):
        _default = Refresher(settings=settings)
    return await _default.fresh_credential(provider)
