"""A local OAuth 2.0 authorization server for tests (PKCE, refresh, OpenRouter key exchange).

Routes:

- ``GET /oauth/authorize``: checks ``response_type=code``, ``client_id``, a loopback
  ``redirect_uri``, ``code_challenge_method=S256``, and redirects (302) to the redirect URI
  with ``code`` and ``state`` (no login page: the user always consents).
- ``POST /oauth/token``: ``authorization_code`` (the PKCE verifier is checked against the
  challenge, the redirect URI and client id against the authorize request) and
  ``refresh_token`` grants; errors are RFC 6749 section 5.2 bodies.
- ``GET /auth`` and ``POST /api/v1/auth/keys``: OpenRouter's PKCE variant (the exchange
  returns ``{"key": ...}``).
- ``POST /login/device/code``, the device-code grant on ``POST /oauth/token`` (answers
  ``authorization_pending`` :attr:`OAuthEmulator.pending_polls` times, then approves) and
  ``GET /copilot_internal/v2/token`` (``Authorization: token <github token>``): GitHub's
  device flow and the Copilot session token exchange.

Test controls: :attr:`OAuthEmulator.expires_in` (lifetime of issued access tokens),
:meth:`expire_all` (every issued access token expires now), :meth:`revoke_refresh_tokens`
(the next refresh fails with ``invalid_grant``). Tests act as the browser with httpx::

    with OAuthEmulator() as emu:
        ...  # [auth.openai] authorize_url = emu.authorize_url, token_url = emu.token_url
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openpista_testing.server import ThreadedServer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

CLIENT_ID = "test-client"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str


@dataclass
class _Issued:
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at
    refresh_tokens: set[str] = field(default_factory=set)


class OAuthEmulator(ThreadedServer):
    """The server on 127.0.0.1 in a background thread. Counts grants in :attr:`calls`."""

    name = "OAuth emulator"

    def __init__(self, *, client_id: str = CLIENT_ID, expires_in: int = 3600) -> None:
        super().__init__()
        self.client_id = client_id
        self.expires_in = expires_in
        self.account_id = "acct-emulated-123"
        self.calls: dict[str, int] = {
            "authorization_code": 0,
            "refresh_token": 0,
            "keys": 0,
            "device_code": 0,
            "copilot": 0,
            "token_exchange": 0,
        }
        self._id_tokens: set[str] = set()
        self.pending_polls = 2
        self._devices: dict[str, int] = {}  # device code -> polls left before approval
        self.issued = _Issued()
        self._codes: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    # -- test controls ---------------------------------------------------------------------

    def expire_all(self) -> None:
        """Every access token issued so far expires now."""
        with self._lock:
            for token in self.issued.access_tokens:
                self.issued.access_tokens[token] = 0.0

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far stops working."""
        with self._lock:
            self.issued.refresh_tokens.clear()

    def token_valid(self, token: str) -> bool:
        """True when ``token`` was issued and has not expired."""
        with self._lock:
            return self.issued.access_tokens.get(token, 0.0) > time.time()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    @property
    def openrouter_authorize_url(self) -> str:
        return f"{self.base_url}/auth"

    @property
    def openrouter_keys_url(self) -> str:
        return f"{self.base_url}/api/v1/auth/keys"

    def config(self, provider: str = "openai") -> str:
        """``[auth.<provider>]`` TOML pointing ``provider``'s sign-in at this server."""
        if provider == "github_copilot":
            return (
                f'[auth.{provider}]\nclient_id = "{self.client_id}"\n'
                f'authorize_url = "{self.base_url}/login/device/code"\n'
                f'token_url = "{self.token_url}"\n'
                f'exchange_url = "{self.base_url}/copilot_internal/v2/token"\n'
            )
        if provider == "openrouter":
            urls = (self.openrouter_authorize_url, self.openrouter_keys_url)
        else:
            urls = (self.authorize_url, self.token_url)
        return (
            f'[auth.{provider}]\nclient_id = "{self.client_id}"\nauthorize_url = "{urls[0]}"\n'
            f'token_url = "{urls[1]}"\ncallback_port = 0\n'
        )

    # -- HTTP ------------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/oauth/authorize", self._authorize, methods=["GET"]),
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/auth", self._openrouter_authorize, methods=["GET"]),
                Route("/api/v1/auth/keys", self._openrouter_keys, methods=["POST"]),
                Route("/login/device/code", self._device_code, methods=["POST"]),
                Route("/copilot_internal/v2/token", self._copilot_token, methods=["GET"]),
            ]
        )

    async def _authorize(self, request: Request) -> Response:
        from starlette.responses import RedirectResponse

        q = request.query_params
        if q.get("client_id") != self.client_id:
            return _error("invalid_client", "unknown client_id", 401)
        redirect_uri = q.get("redirect_uri", "")
        if not _loopback(redirect_uri):
            return _error("invalid_request", "redirect_uri must be a loopback URL")
        if q.get("response_type") != "code":
            return _error("unsupported_response_type", "response_type must be code")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return _error("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if not q.get("state"):
            return _error("invalid_request", "state is required")
        code = self._new_code(redirect_uri, q["code_challenge"], q.get("scope", ""))
        target = _add_query(redirect_uri, {"code": code, "state": q["state"]})
        return RedirectResponse(target, status_code=302)

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        data = {k: str(v) for k, v in form.items()}
        grant_type = data.get("grant_type")
        if grant_type == "authorization_code":
            return self._code_grant(data)
        if grant_type == "refresh_token":
            return self._refresh_grant(data)
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_grant(data)
        if grant_type == "urn:ietf:params:oauth:grant-type:token-exchange":
            return self._token_exchange(data)
        return _error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _code_grant(self, data: dict[str, str]) -> Response:
        for name in ("code", "redirect_uri", "client_id", "code_verifier"):
            if not data.get(name):
                return _error("invalid_request", f"{name} is required")
        with self._lock:
            grant = self._codes.pop(data["code"], None)  # a code works once
        if grant is None:
            return _error("invalid_grant", "unknown or used authorization code")
        if data["client_id"] != grant.client_id:
            return _error("invalid_client", "client_id does not match", 401)
        if data["redirect_uri"] != grant.redirect_uri:
            return _error("invalid_grant", "redirect_uri does not match the authorize request")
        if _s256(data["code_verifier"]) != grant.challenge:
            return _error("invalid_grant", "PKCE verification failed")
        self.calls["authorization_code"] += 1
        return self._issue(with_id_token=True)

    def _refresh_grant(self, data: dict[str, str]) -> Response:
        if data.get("client_id") != self.client_id:
            return _error("invalid_client", "unknown client_id", 401)
        token = data.get("refresh_token", "")
        with self._lock:
            known = token in self.issued.refresh_tokens
            self.issued.refresh_tokens.discard(token)  # rotation: each works once
        if not known:
            return _error("invalid_grant", "the refresh token is invalid, expired or revoked")
        self.calls["refresh_token"] += 1
        return self._issue(with_id_token=False)

    def _issue(self, with_id_token: bool) -> Response:
        from starlette.responses import JSONResponse

        n = next(self._serial)
        access, refresh = f"at-{n}-{secrets.token_hex(8)}", f"rt-{n}-{secrets.token_hex(8)}"
        with self._lock:
            self.issued.access_tokens[access] = time.time() + self.expires_in
            self.issued.refresh_tokens.add(refresh)
        body: dict[str, Any] = {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if with_id_token:
            body["id_token"] = _unsigned_jwt(
                {
                    "sub": f"user-1-{n}",
                    "https://api.openai.com/auth": {"chatgpt_account_id": self.account_id},
                }
            )
            with self._lock:
                self._id_tokens.add(body["id_token"])
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _token_exchange(self, data: dict[str, str]) -> Response:
        from starlette.responses import JSONResponse

        if data.get("client_id") != self.client_id:
            return _error("invalid_client", "unknown client_id", 401)
        if data.get("requested_token") != "openai-api-key":
            return _error("invalid_request", "requested_token must be openai-api-key")
        if data.get("subject_token_type") != "urn:ietf:params:oauth:token-type:id_token":
            return _error("invalid_request", "subject_token_type must be an id_token")
        with self._lock:
            known = data.get("subject_token") in self._id_tokens
        if not known:
            return _error("invalid_grant", "unknown subject_token")
        self.calls["token_exchange"] += 1
        return JSONResponse(
            {"access_token": f"sk-proj-{secrets.token_hex(16)}", "token_type": "Bearer"}
        )

    async def _openrouter_authorize(self, request: Request) -> Response:
        from starlette.responses import RedirectResponse

        q = request.query_params
        callback = q.get("callback_url", "")
        if not _loopback(callback):
            return _error("invalid_request", "callback_url must be a loopback URL")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return _error("invalid_request", "PKCE with code_challenge_method=S256 is required")
        code = self._new_code(callback, q["code_challenge"], "")
        return RedirectResponse(_add_query(callback, {"code": code}), status_code=302)

    async def _openrouter_keys(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            data = json.loads(await request.body())
        except ValueError:
            return _error("invalid_request", "the body is not JSON")
        with self._lock:
            grant = self._codes.pop(str(data.get("code")), None)
        if grant is None:
            return _error("invalid_grant", "unknown or used code", 403)
        if _s256(str(data.get("code_verifier"))) != grant.challenge:
            return _error("invalid_grant", "PKCE verification failed", 403)
        self.calls["keys"] += 1
        return JSONResponse({"key": f"sk-or-v1-{secrets.token_hex(16)}", "user_id": "user-1"})

    async def _device_code(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        form = await request.form()
        if form.get("client_id") != self.client_id:
            return _error("invalid_client", "unknown client_id", 401)
        device = f"dc-{secrets.token_hex(8)}"
        with self._lock:
            self._devices[device] = self.pending_polls
        return JSONResponse(
            {
                "device_code": device,
                "user_code": "WDJB-MJHT",
                "verification_uri": f"{self.base_url}/login/device",
                "expires_in": 900,
                "interval": 0,
            }
        )

    def _device_grant(self, data: dict[str, str]) -> Response:
        from starlette.responses import JSONResponse

        if data.get("client_id") != self.client_id:
            return _error("invalid_client", "unknown client_id", 401)
        device = data.get("device_code", "")
        with self._lock:
            left = self._devices.get(device)
            if left is not None and left > 0:
                self._devices[device] = left - 1
            elif left is not None:
                del self._devices[device]  # a device code is redeemed once
        if left is None:
            return _error("expired_token", "unknown or expired device code")
        if left > 0:
            return _error("authorization_pending", "the user has not approved yet")
        self.calls["device_code"] += 1
        token = f"gho_{secrets.token_hex(12)}"
        with self._lock:
            self.issued.refresh_tokens.add(token)  # revoke_refresh_tokens() revokes it too
        return JSONResponse({"access_token": token, "token_type": "bearer", "scope": "read:user"})

    async def _copilot_token(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        header = request.headers.get("authorization", "")
        token = header.removeprefix("token ").strip()
        with self._lock:
            known = header.startswith("token ") and token in self.issued.refresh_tokens
        if not known:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        self.calls["copilot"] += 1
        n = next(self._serial)
        session = f"tid={n};exp={secrets.token_hex(8)}"
        expires = time.time() + self.expires_in
        with self._lock:
            self.issued.access_tokens[session] = expires
        return JSONResponse({"token": session, "expires_at": int(expires), "refresh_in": 1500})

    def _new_code(self, redirect_uri: str, challenge: str, scope: str) -> str:
        code = f"code-{secrets.token_hex(8)}"
        with self._lock:
            self._codes[code] = _Grant(self.client_id, redirect_uri, challenge, scope)
        return code


def _error(code: str, description: str, status: int = 400) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(
        {"error": code, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _loopback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
