"""OAuth 2.0 Authorization Code with PKCE (RFC 7636, S256) and a loopback callback.

The flow: make a verifier and its S256 challenge and a random ``state``; send the browser to
the authorize URL with ``redirect_uri`` on ``127.0.0.1``; the provider redirects back with
``code`` and ``state``; the code and the verifier are exchanged for tokens. When no browser
can reach the callback (a headless server), the user pastes the redirected URL (or just the
code) instead. PKCE is built on :mod:`hashlib` and :mod:`secrets` (RFC 7636 section 4; no
PKCE library is among the chosen dependencies).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from openpista.auth.credentials import AuthError, Credential
from openpista.auth.providers import OAuthProvider

log = logging.getLogger(__name__)

OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"


def pkce_pair() -> tuple[str, str]:
    """A random code verifier (86 characters) and its S256 code challenge."""
    verifier = secrets.token_urlsafe(64)
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    """One login attempt: where to send the browser and what to check on return."""

    provider: OAuthProvider
    url: str
    state: str
    verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(provider={self.provider.name!r}, url={self.url!r})"


def start_authorization(provider: OAuthProvider, redirect_uri: str) -> AuthorizationRequest:
    """Build the authorize URL with a fresh verifier, challenge and ``state``."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    if provider.flavor == "openrouter":
        # OpenRouter takes callback_url and appends ?code=; the state rides in the callback.
        callback = _add_query(redirect_uri, {"state": state})
        params = {
            "callback_url": callback,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        redirect_uri = callback
    else:
        params = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.scopes),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            **dict(provider.extra_params),
        }
    url = _add_query(provider.authorize_url, params)
    return AuthorizationRequest(provider, url, state, verifier, redirect_uri)


def parse_callback(text: str, request: AuthorizationRequest) -> str:
    """The ``code`` from a redirected URL, a query string, or a bare code (paste fallback).

    A ``state`` that does not match, or an ``error`` from the provider, raises
    :class:`AuthError`. A bare code cannot carry a state and is accepted as is.
    """
    text = text.strip()
    if not text:
        raise AuthError("no code was entered; run `openpista auth login` again")
    if "code=" not in text and "error=" not in text and "?" not in text:
        return text
    query = text.split("?", 1)[1] if "?" in text else text
    params = dict(urllib.parse.parse_qsl(query))
    if "error" in params:
        reason = params.get("error_description") or params["error"]
        raise AuthError(f"{request.provider.name} refused the login: {reason}")
    if params.get("state") != request.state:
        raise AuthError(
            f"{request.provider.name} login: the callback's state does not match this login "
            "(a stale or forged redirect); run `openpista auth login` again"
        )
    code = params.get("code")
    if not code:
        raise AuthError(f"{request.provider.name} login: the callback has no code")
    return code


async def exchange_code(
    request: AuthorizationRequest, code: str, client: httpx.AsyncClient
) -> Credential:
    """Trade the authorization ``code`` and the PKCE verifier for a credential."""
    provider = request.provider
    if provider.flavor == "openrouter":
        body = await _post(
            client,
            provider,
            json={"code": code, "code_verifier": request.verifier, "code_challenge_method": "S256"},
        )
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise AuthError(f"{provider.name}: the key exchange returned no key")
        return Credential(kind="api_key", api_key=key)
    body = await _post(
        client,
        provider,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": request.redirect_uri,
            "client_id": provider.client_id,
            "code_verifier": request.verifier,
        },
    )
    credential = _tokens(provider, body, None)
    if provider.api_key_exchange and credential.id_token:
        key = await exchange_id_token(provider, credential.id_token, client)
        credential = replace(credential, api_key=key)
    return credential


TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105  an OAuth grant type URN, not a secret


async def exchange_id_token(
    provider: OAuthProvider, id_token: str, client: httpx.AsyncClient
) -> str | None:
    """Trade the id_token for an API key billed to the subscription (RFC 8693 token
    exchange, as OpenAI's Codex CLI does). ``None`` when refused: the login still stands,
    with the access token only."""
    try:
        body = await _post(
            client,
            provider,
            data={
                "grant_type": TOKEN_EXCHANGE_GRANT,
                "client_id": provider.client_id,
                "requested_token": "openai-api-key",
                "subject_token": id_token,
                "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            },
        )
    except AuthError as exc:
        log.warning("%s: no API key from the id_token exchange (%s)", provider.name, exc)
        return None
    key = body.get("access_token")
    return key if isinstance(key, str) and key else None


async def refresh_tokens(
    provider: OAuthProvider, credential: Credential, client: httpx.AsyncClient
) -> Credential:
    """Use the refresh token; raises :class:`AuthError` when the provider refuses it."""
    if not credential.refresh_token:
        raise AuthError(f"{provider.name}: the stored login has no refresh token")
    if provider.flavor == "device":
        return await copilot_exchange(provider, credential.refresh_token, client)
    body = await _post(
        client,
        provider,
        data={
            "grant_type": "refresh_token",
            "refresh_token": credential.refresh_token,
            "client_id": provider.client_id,
        },
    )
    return _tokens(provider, body, credential)


async def _post(
    client: httpx.AsyncClient, provider: OAuthProvider, **kwargs: Any
) -> dict[str, Any]:
    try:
        response = await client.post(
            provider.token_url, headers={"Accept": "application/json"}, **kwargs
        )
    except httpx.HTTPError as exc:
        raise AuthError(
            f"{provider.name}: cannot reach {provider.token_url} ({type(exc).__name__})"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):  # OpenRouter-style {"error": {"message": ...}}
            error = error.get("code") or error.get("message")
        description = body.get("error_description") if isinstance(body, dict) else None
        reason = f"{error}" + (f": {description}" if description else "") if error else "no detail"
        raise AuthError(
            f"{provider.name}: the token endpoint refused the request "
            f"(HTTP {response.status_code}, {reason})"
        )
    return body


def _tokens(
    provider: OAuthProvider, body: dict[str, Any], previous: Credential | None
) -> Credential:
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise AuthError(f"{provider.name}: the token endpoint returned no access_token")
    expires_in = body.get("expires_in")
    expires_at = time.time() + float(expires_in) if isinstance(expires_in, int | float) else None
    id_token = body.get("id_token") or (previous.id_token if previous else None)
    refresh = body.get("refresh_token") or (previous.refresh_token if previous else None)
    return Credential(
        kind="oauth",
        api_key=previous.api_key if previous else None,
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) else None,
        expires_at=expires_at,
        id_token=id_token if isinstance(id_token, str) else None,
        account_id=account_id_from(id_token) if isinstance(id_token, str) else None,
    )


def account_id_from(id_token: str) -> str | None:
    """``chatgpt_account_id`` from the id_token's claims (signature not checked: the token
    came straight from the token endpoint over TLS and is only read, never trusted)."""
    import jwt

    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    auth = claims.get(OPENAI_AUTH_CLAIM)
    value = auth.get("chatgpt_account_id") if isinstance(auth, dict) else None
    return value if isinstance(value, str) else None


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


# -- the loopback callback -------------------------------------------------------------------

_PAGE = (
    "<!doctype html><meta charset=utf-8><title>openpista</title>"
    "<p>{message}</p><p>You can close this tab and return to the terminal.</p>"
)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 that waits for one request on the callback path."""

    def __init__(self, port: int = 0, path: str = "/auth/callback") -> None:
        self.path = path
        self._received: str | None = None
        self._event = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urllib.parse.urlsplit(self.path).path != outer.path:
                    self.send_error(404)
                    return
                outer._received = self.path
                ok = "error=" not in self.path
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                message = "Signed in to openpista." if ok else "The sign-in was refused."
                self.wfile.write(_PAGE.format(message=message).encode())
                outer._event.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line holds the authorization code: never log it

        try:
            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise AuthError(
                f"cannot listen on 127.0.0.1:{port} for the login callback ({exc.strerror}); "
                "use --no-browser to paste the code instead"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="openpista-oauth-callback", daemon=True
        )

    @property
    def redirect_uri(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}{self.path}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    async def wait(self, wait_seconds: float) -> str:
        """The callback's path and query, once the browser came back."""
        got = await asyncio.to_thread(self._event.wait, wait_seconds)
        if not got or self._received is None:
            raise AuthError(
                f"no answer from the browser within {wait_seconds:.0f} s; "
                "run `openpista auth login --no-browser` to paste the code instead"
            )
        return self._received


async def login_with_browser(
    provider: OAuthProvider,
    open_browser: Callable[[str], Awaitable[object] | object],
    *,
    client: httpx.AsyncClient,
    wait_seconds: float = 300.0,
) -> Credential:
    """Run the flow with the loopback callback; ``open_browser(url)`` shows the user the URL."""
    with LoopbackServer(provider.callback_port, provider.callback_path) as server:
        request = start_authorization(provider, server.redirect_uri)
        opened = open_browser(request.url)
        if asyncio.iscoroutine(opened):
            await opened
        received = await server.wait(wait_seconds)
    code = parse_callback(received, request)
    log.info("%s: authorization code received, exchanging it", provider.name)
    return await exchange_code(request, code, client)


async def login_with_paste(
    provider: OAuthProvider,
    show: Callable[[str], object],
    read: Callable[[], str],
    *,
    client: httpx.AsyncClient,
) -> Credential:
    """Run the flow without a listening callback: show the URL, read the pasted redirect."""
    port = provider.callback_port or 1455
    redirect = f"http://127.0.0.1:{port}{provider.callback_path}"
    request = start_authorization(provider, redirect)
    show(request.url)
    code = parse_callback(await asyncio.to_thread(read), request)
    return await exchange_code(request, code, client)


# -- the device-code flow (RFC 8628) and the Copilot token exchange ----------------------------

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True, repr=False)
class DeviceCode:
    """What the user is shown: open ``verification_uri`` and enter ``user_code``."""

    device_code: str
    user_code: str
    verification_uri: str
    interval: float
    expires_in: float

    def __repr__(self) -> str:
        return f"DeviceCode(user_code={self.user_code!r}, uri={self.verification_uri!r})"


async def start_device(provider: OAuthProvider, client: httpx.AsyncClient) -> DeviceCode:
    """Ask the device authorization endpoint for a device code and a user code."""
    body = await _form(
        client,
        provider,
        provider.authorize_url,
        {"client_id": provider.client_id, "scope": " ".join(provider.scopes)},
    )
    try:
        return DeviceCode(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            interval=float(body.get("interval", 5)),
            expires_in=float(body.get("expires_in", 900)),
        )
    except (KeyError, TypeError, ValueError):
        raise AuthError(f"{provider.name}: the device authorization answer is incomplete") from None


async def poll_device(
    provider: OAuthProvider,
    device: DeviceCode,
    client: httpx.AsyncClient,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> str:
    """Poll the token endpoint until the user approved; returns the access token."""
    interval = device.interval
    deadline = time.monotonic() + device.expires_in
    while time.monotonic() < deadline:
        await sleep(interval)
        body = await _form(
            client,
            provider,
            provider.token_url,
            {
                "client_id": provider.client_id,
                "device_code": device.device_code,
                "grant_type": DEVICE_GRANT,
            },
            allow_error=True,
        )
        token = body.get("access_token")
        if isinstance(token, str) and token:
            return token
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        reason = {"access_denied": "the sign-in was denied", "expired_token": "the code expired"}
        raise AuthError(
            f"{provider.name}: {reason.get(str(error), f'the token endpoint said {error}')}; "
            f"run `openpista auth login {provider.name}` again"
        )
    raise AuthError(
        f"{provider.name}: the code expired before the sign-in was approved; "
        f"run `openpista auth login {provider.name}` again"
    )


async def copilot_exchange(
    provider: OAuthProvider, github_token: str, client: httpx.AsyncClient
) -> Credential:
    """Trade the GitHub token for a Copilot session token (the GitHub token is kept to
    refresh it: it is stored as the refresh token)."""
    try:
        response = await client.get(
            provider.exchange_url,
            headers={"Authorization": f"token {github_token}", "Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise AuthError(
            f"{provider.name}: cannot reach {provider.exchange_url} ({type(exc).__name__})"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict) or not body.get("token"):
        detail = body.get("message") if isinstance(body, dict) else None
        raise AuthError(
            f"{provider.name}: the Copilot token exchange was refused "
            f"(HTTP {response.status_code}{f', {detail}' if detail else ''})"
        )
    expires = body.get("expires_at")
    return Credential(
        kind="oauth",
        access_token=str(body["token"]),
        refresh_token=github_token,
        expires_at=float(expires) if isinstance(expires, int | float) else None,
    )


async def login_with_device(
    provider: OAuthProvider,
    show: Callable[[DeviceCode], object],
    *,
    client: httpx.AsyncClient,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Credential:
    """The whole device flow: show the user code, wait for approval, exchange the token."""
    device = await start_device(provider, client)
    show(device)
    github_token = await poll_device(provider, device, client, sleep)
    log.info("%s: device sign-in approved, exchanging the token", provider.name)
    return await copilot_exchange(provider, github_token, client)


async def _form(
    client: httpx.AsyncClient,
    provider: OAuthProvider,
    url: str,
    data: dict[str, str],
    *,
    allow_error: bool = False,
) -> dict[str, Any]:
    try:
        response = await client.post(url, data=data, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise AuthError(f"{provider.name}: cannot reach {url} ({type(exc).__name__})") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AuthError(f"{provider.name}: {url} answered HTTP {response.status_code}, not JSON")
    if response.status_code >= 400 and not (allow_error and "error" in body):
        raise AuthError(
            f"{provider.name}: {url} refused the request "
            f"(HTTP {response.status_code}, {body.get('error', 'no detail')})"
        )
    return body
