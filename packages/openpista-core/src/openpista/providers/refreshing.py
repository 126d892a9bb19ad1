"""A provider signed in with OAuth keeps its token fresh for as long as the daemon runs.

:meth:`ProviderRegistry.build` wraps the provider it built from a stored OAuth login in a
:class:`RefreshingProvider`. Before every request the wrapper asks
:func:`openpista.auth.refresh.fresh_credential` for the login (which refreshes it five
minutes before expiry, one refresh per provider at a time) and, when the token changed,
rebuilds the provider with the new one. A failed refresh becomes an ``auth`` error that tells
the user to log in again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from openpista.providers.base import (
    ChatResult,
    LlmProvider,
    ProviderError,
    StreamEvent,
    ToolSpec,
    close_provider,
    warm_up,
)

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.models import Message

Rebuild = Callable[[str], LlmProvider]
"""Builds the provider again with a new access token."""


class RefreshingProvider:
    """Wraps ``inner`` (built with ``token``) and swaps it when the stored login is renewed."""

    def __init__(
        self,
        inner: LlmProvider,
        *,
        credential_name: str,
        token: str,
        rebuild: Rebuild,
        settings: Settings | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.credential_name = credential_name
        self._token = token
        self._rebuild = rebuild
        self._settings = settings

    async def _current(self) -> LlmProvider:
        from openpista.auth.credentials import AuthError
        from openpista.auth.refresh import fresh_credential

        try:
            credential = await fresh_credential(self.credential_name, self._settings)
        except AuthError as exc:
            raise ProviderError("auth", str(exc)) from None
        token = credential.secret if credential is not None else None
        if token and token != self._token:
            # The old provider closes its connections once its requests in flight end.
            previous, self.inner = self.inner, self._rebuild(token)
            self._token = token
            await close_provider(previous)
        return self.inner

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        """:meth:`LlmProvider.stream` with a token refreshed first when it expires soon."""
        inner = await self._current()
        async for event in inner.stream(messages, tools):
            yield event

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ChatResult:
        """:meth:`LlmProvider.complete` with a token refreshed first when it expires soon."""
        return await (await self._current()).complete(messages, tools)

    async def prepare(self) -> None:
        """The wrapped provider's ``prepare`` (see :class:`LlmProvider`), if it has one."""
        await warm_up(self.inner)

    async def list_models(self) -> list[str]:
        """:meth:`LlmProvider.list_models` with a fresh token."""
        return await (await self._current()).list_models()

    async def aclose(self) -> None:
        """Close the wrapped provider (see :func:`close_provider`)."""
        await close_provider(self.inner)
