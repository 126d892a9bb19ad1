"""OAuth for remote servers (``oauth = true``), with the SDK's OAuth client.

``openpista mcp login NAME`` runs the authorization-code flow once (PKCE, dynamic client
registration, a loopback redirect); tokens and the registered client are kept in
``~/.openpista/mcp/oauth.json`` (mode 0600), by server name and URL. Afterwards the client
sends the access token and refreshes it by itself; a server without tokens fails with
"run openpista mcp login NAME".
"""

from __future__ import annotations

import asyncio
import json
import webbrowser
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from openpista.config import ConfigError, home_dir
from openpista.files import write_private
from openpista_mcp.settings import ServerSettings

_UNUSED_REDIRECT = "http://127.0.0.1/callback"
"""Registered clients keep their redirect; this one is never used outside ``login``."""


def store_path() -> Path:
    """Where tokens are kept: ``~/.openpista/mcp/oauth.json``."""
    return home_dir() / "mcp" / "oauth.json"


class FileTokenStorage:
    """The SDK's ``TokenStorage`` for one server, in the private JSON file."""

    def __init__(self, name: str, url: str, path: Path | None = None) -> None:
        self.key = f"{name} {url}"
        self.path = path or store_path()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: unreadable ({exc}); remove it and log in again"
            ) from None
        return data if isinstance(data, dict) else {}

    def _entry(self) -> dict[str, Any]:
        entry = self._read().get(self.key)
        return entry if isinstance(entry, dict) else {}

    def _update(self, field: str, value: dict[str, Any] | None) -> None:
        data = self._read()
        entry = data.setdefault(self.key, {})
        if value is None:
            entry.pop(field, None)
        else:
            entry[field] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.path, json.dumps(data, indent=1))

    async def get_tokens(self) -> OAuthToken | None:
        tokens = self._entry().get("tokens")
        return OAuthToken.model_validate(tokens) if tokens else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self._update("tokens", tokens.model_dump(mode="json", exclude_none=True))

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        info = self._entry().get("client_info")
        return OAuthClientInformationFull.model_validate(info) if info else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self._update("client_info", client_info.model_dump(mode="json", exclude_none=True))

    def forget_client(self) -> None:
        """Drop the registered client (a new login registers with its own redirect)."""
        self._update("client_info", None)


def provider(
    name: str,
    settings: ServerSettings,
    redirect_uri: str = _UNUSED_REDIRECT,
    redirect_handler: Callable[[str], Awaitable[None]] | None = None,
    callback_handler: Callable[[], Awaitable[AuthorizationCodeResult]] | None = None,
) -> OAuthClientProvider:
    """The httpx auth of server ``name``; without handlers a needed sign-in raises
    ConfigError telling the user to log in."""

    async def needs_login(*_: object) -> Any:
        raise ConfigError(f"it needs a sign-in: run openpista mcp login {name}")

    assert settings.url is not None  # noqa: S101  an invariant for mypy, not a check
    metadata = OAuthClientMetadata(
        client_name="openpista",
        redirect_uris=[redirect_uri],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",  # noqa: S106  a public client (PKCE): no client secret by design
        scope=" ".join(settings.oauth_scopes) or None,
    )
    return OAuthClientProvider(
        server_url=settings.url,
        client_metadata=metadata,
        storage=FileTokenStorage(name, settings.url),
        redirect_handler=redirect_handler or needs_login,
        callback_handler=callback_handler or needs_login,
    )


async def login(name: str, settings: ServerSettings, open_browser: bool, wait: float) -> int:
    """Sign in to server ``name`` in the browser (waiting ``wait`` seconds for it); the
    number of tools the server then lists."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from openpista.serving import EmbeddedServer, bind_tcp
    from openpista_mcp.connection import open_client

    assert settings.url is not None  # noqa: S101  an invariant for mypy, not a check
    answers: asyncio.Queue[AuthorizationCodeResult | str] = asyncio.Queue()

    async def callback(request: Request) -> PlainTextResponse:
        code = request.query_params.get("code")
        if not code:
            error = request.query_params.get("error", "no code in the redirect")
            answers.put_nowait(error)
            return PlainTextResponse(f"Sign-in failed: {error}", status_code=400)
        state = request.query_params.get("state")
        answers.put_nowait(AuthorizationCodeResult(code=code, state=state))
        return PlainTextResponse("openpista is signed in; you can close this tab.")

    async def show(url: str) -> None:
        print(f"Open this address to sign in to {name}:\n  {url}", flush=True)
        if open_browser:
            await asyncio.to_thread(webbrowser.open, url)

    async def wait_for_code() -> AuthorizationCodeResult:
        try:
            answer = await asyncio.wait_for(answers.get(), wait)
        except TimeoutError:
            raise ConfigError(f"no sign-in within {wait:g} s") from None
        if isinstance(answer, str):
            raise ConfigError(f"the sign-in failed: {answer}")
        return answer

    sock = bind_tcp("127.0.0.1", 0)
    server = EmbeddedServer(Starlette(routes=[Route("/callback", callback)]), name="mcp login")
    await server.start(sock)
    try:
        redirect = f"http://127.0.0.1:{server.port}/callback"
        FileTokenStorage(name, settings.url).forget_client()
        auth = provider(name, settings, redirect, show, wait_for_code)
        async with open_client(settings, auth) as client:
            listed = await client.list_tools()
        return len(listed.tools)
    finally:
        await server.stop()
