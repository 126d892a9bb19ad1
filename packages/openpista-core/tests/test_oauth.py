"""OAuth 2.0 PKCE login, refresh and failures against the local OAuth emulator."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from openpista.auth.credentials import AuthError, Credential, CredentialStore
from openpista.auth.oauth import (
    DeviceCode,
    exchange_code,
    login_with_browser,
    login_with_device,
    login_with_paste,
    parse_callback,
    poll_device,
    s256,
    start_authorization,
    start_device,
)
from openpista.auth.providers import OAuthProvider, oauth_provider
from openpista.auth.refresh import Refresher
from openpista.config import AuthProviderSettings, ProviderSettings, Settings
from openpista.models import Message
from openpista.plugins import PluginHost
from openpista.providers.base import LlmProvider, ProviderError
from openpista.runtime import build_providers
from openpista_testing.emulator import LlmEmulator
from openpista_testing.oauth_emulator import OAuthEmulator


@pytest.fixture
def emu() -> Iterator[OAuthEmulator]:
    with OAuthEmulator() as emulator:
        yield emulator


def _settings(emu: OAuthEmulator) -> Settings:
    return Settings(
        auth={
            "openai": AuthProviderSettings(
                client_id=emu.client_id,
                authorize_url=emu.authorize_url,
                token_url=emu.token_url,
                callback_port=0,
            ),
            "openrouter": AuthProviderSettings(
                authorize_url=emu.openrouter_authorize_url,
                token_url=emu.openrouter_keys_url,
            ),
        }
    )


def _table(emu: OAuthEmulator, name: str = "openai") -> OAuthProvider:
    table = oauth_provider(name, _settings(emu))
    assert table is not None
    return table


async def _browser(url: str) -> None:
    """The user's browser: follows the authorize redirect to the loopback callback."""
    async with httpx.AsyncClient(follow_redirects=True) as browser:
        response = await browser.get(url)
    assert response.status_code == 200, response.text


async def _redirected(url: str) -> str:
    """The address the authorize endpoint sends the browser to (not followed)."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def test_pkce_s256_matches_rfc7636_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_overrides_apply(emu: OAuthEmulator) -> None:
    table = _table(emu)
    assert table.token_url == emu.token_url
    assert table.client_id == emu.client_id
    assert table.scopes == ("openid", "profile", "email", "offline_access")
    assert oauth_provider("anthropic") is None  # API key only, on purpose
    assert oauth_provider("openai") is not None
    assert oauth_provider("openai").token_url.startswith("https://auth.openai.com/")  # type: ignore[union-attr]


async def test_loopback_login(emu: OAuthEmulator) -> None:
    async with httpx.AsyncClient() as client:
        credential = await login_with_browser(_table(emu), _browser, client=client)
    assert credential.kind == "oauth"
    assert credential.access_token is not None
    assert emu.token_valid(credential.access_token)
    assert credential.refresh_token
    assert credential.account_id == emu.account_id
    assert credential.expires_at is not None
    assert abs(credential.expires_at - (time.time() + 3600)) < 60
    assert emu.calls["authorization_code"] == 1
    # The id_token was traded for an API key, which is what the provider is given.
    assert emu.calls["token_exchange"] == 1
    assert credential.api_key is not None
    assert credential.api_key.startswith("sk-proj-")
    assert credential.secret == credential.api_key


async def test_paste_login(emu: OAuthEmulator) -> None:
    shown: list[str] = []

    def read() -> str:
        return asyncio.run(_redirected(shown[0]))

    async with httpx.AsyncClient() as client:
        credential = await login_with_paste(_table(emu), shown.append, read, client=client)
    assert credential.access_token is not None
    assert emu.token_valid(credential.access_token)
    assert shown[0].startswith(emu.authorize_url)
    assert "code_challenge_method=S256" in shown[0]


async def test_openrouter_login_returns_a_key(emu: OAuthEmulator) -> None:
    async with httpx.AsyncClient() as client:
        credential = await login_with_browser(_table(emu, "openrouter"), _browser, client=client)
    assert credential.kind == "api_key"
    assert credential.api_key is not None
    assert credential.api_key.startswith("sk-or-v1-")
    assert emu.calls["keys"] == 1


async def test_wrong_verifier_state_and_redirect_are_refused(emu: OAuthEmulator) -> None:
    table = _table(emu)
    redirect = "http://127.0.0.1:9/auth/callback"
    async with httpx.AsyncClient() as client:
        request = start_authorization(table, redirect)
        code = parse_callback(await _redirected(request.url), request)
        with pytest.raises(AuthError, match="invalid_grant: PKCE verification failed"):
            await exchange_code(replace(request, verifier="x" * 43), code, client)

        request = start_authorization(table, redirect)
        location = await _redirected(request.url)
        with pytest.raises(AuthError, match="state does not match"):
            parse_callback(location.replace(request.state, "forged"), request)
        code = parse_callback(location, request)
        moved = replace(request, redirect_uri="http://127.0.0.1:10/auth/callback")
        with pytest.raises(AuthError, match="redirect_uri does not match"):
            await exchange_code(moved, code, client)
        with pytest.raises(AuthError, match="unknown or used"):  # codes work once
            await exchange_code(request, code, client)

        with pytest.raises(AuthError, match="refused the login: access_denied"):
            parse_callback(f"{redirect}?error=access_denied&state={request.state}", request)

        response = await client.post(emu.token_url, data={"grant_type": "password"})
        assert response.status_code == 400
        assert response.json()["error"] == "unsupported_grant_type"
        bad = await client.get(
            emu.authorize_url,
            params={"client_id": emu.client_id, "redirect_uri": "https://evil.example/cb"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_request"


async def _stored_login(emu: OAuthEmulator, store: CredentialStore) -> Credential:
    async with httpx.AsyncClient() as client:
        credential = await login_with_browser(_table(emu), _browser, client=client)
    store.set("openai", credential)
    return credential


async def test_refresh_before_expiry_once_per_provider(emu: OAuthEmulator, tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials.toml")
    refresher = Refresher(store, _settings(emu))
    emu.expires_in = 3600
    first = await _stored_login(emu, store)
    assert await refresher.fresh_credential("openai") == first  # far from expiry: no refresh
    assert emu.calls["refresh_token"] == 0

    store.set("openai", replace(first, expires_at=time.time() + 120))  # within 5 minutes
    results = await asyncio.gather(*(refresher.fresh_credential("openai") for _ in range(8)))
    assert emu.calls["refresh_token"] == 1
    fresh = results[0]
    assert fresh is not None
    assert all(r == fresh for r in results)
    assert fresh.access_token != first.access_token
    assert fresh.access_token is not None
    assert emu.token_valid(fresh.access_token)
    assert fresh.account_id == emu.account_id  # kept from the first id_token
    assert fresh.api_key == first.api_key  # the exchanged API key is kept
    assert store.get("openai") == fresh
    assert await refresher.fresh_credential("anthropic") is None


async def test_refresh_failure_says_log_in_again(
    emu: OAuthEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = CredentialStore(tmp_path / "credentials.toml")
    refresher = Refresher(store, _settings(emu))
    first = await _stored_login(emu, store)
    emu.expire_all()
    emu.revoke_refresh_tokens()
    store.set("openai", replace(first, expires_at=time.time() - 1))
    with pytest.raises(AuthError) as info:
        await refresher.fresh_credential("openai")
    message = str(info.value)
    assert "log in again with `openpista auth login openai`" in message
    assert "invalid_grant" in message
    for secret in (first.access_token, first.refresh_token, first.id_token):
        assert secret is not None
        assert secret not in message
        assert secret not in caplog.text


async def test_no_secret_in_logs(
    emu: OAuthEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = CredentialStore(tmp_path / "credentials.toml")
    first = await _stored_login(emu, store)
    store.set("openai", replace(first, expires_at=time.time() + 10))
    fresh = await Refresher(store, _settings(emu)).fresh_credential("openai")
    assert fresh is not None
    logged = caplog.text + repr(fresh) + repr(store.load())
    for secret in (
        first.access_token,
        first.refresh_token,
        first.api_key,
        fresh.access_token,
        fresh.refresh_token,
    ):
        assert secret is not None
        assert secret not in logged
    assert "refreshing the access token" in caplog.text  # logging did happen


def test_parse_callback_accepts_bare_code_and_query(emu: OAuthEmulator) -> None:
    request = start_authorization(_table(emu), "http://127.0.0.1:1/auth/callback")
    assert parse_callback("  abc123 \n", request) == "abc123"
    query = urllib.parse.urlencode({"code": "c1", "state": request.state})
    assert parse_callback(f"?{query}", request) == "c1"
    assert parse_callback(f"/auth/callback?{query}", request) == "c1"
    with pytest.raises(AuthError, match="no code"):
        parse_callback("", request)


def _copilot(emu: OAuthEmulator) -> OAuthProvider:
    table = oauth_provider(
        "github_copilot",
        Settings(
            auth={
                "github_copilot": AuthProviderSettings(
                    client_id=emu.client_id,
                    authorize_url=f"{emu.base_url}/login/device/code",
                    token_url=emu.token_url,
                    exchange_url=f"{emu.base_url}/copilot_internal/v2/token",
                )
            }
        ),
    )
    assert table is not None
    assert table.flavor == "device"
    return table


async def test_copilot_device_flow_and_refresh(emu: OAuthEmulator, tmp_path: Path) -> None:
    shown: list[DeviceCode] = []
    emu.pending_polls = 3
    async with httpx.AsyncClient() as client:
        credential = await login_with_device(_copilot(emu), shown.append, client=client)
    assert shown[0].user_code == "WDJB-MJHT"
    assert emu.calls["device_code"] == 1
    assert emu.calls["copilot"] == 1
    assert credential.access_token is not None
    assert emu.token_valid(credential.access_token)
    assert credential.refresh_token is not None
    assert credential.refresh_token.startswith("gho_")

    store = CredentialStore(tmp_path / "credentials.toml")
    store.set("github_copilot", replace(credential, expires_at=time.time() + 60))
    settings = Settings(
        auth={
            "github_copilot": AuthProviderSettings(
                client_id=emu.client_id,
                authorize_url=f"{emu.base_url}/login/device/code",
                token_url=emu.token_url,
                exchange_url=f"{emu.base_url}/copilot_internal/v2/token",
            )
        }
    )
    fresh = await Refresher(store, settings).fresh_credential("github_copilot")
    assert fresh is not None
    assert fresh.access_token != credential.access_token
    assert emu.calls["copilot"] == 2

    emu.revoke_refresh_tokens()
    store.set("github_copilot", replace(fresh, expires_at=time.time() - 1))
    with pytest.raises(AuthError, match="log in again with `openpista auth login github_copilot`"):
        await Refresher(store, settings).fresh_credential("github_copilot")


async def test_device_flow_denied_or_expired(emu: OAuthEmulator) -> None:
    table = _copilot(emu)
    async with httpx.AsyncClient() as client:
        device = await start_device(table, client)
        gone = replace(device, device_code="dc-unknown")
        with pytest.raises(AuthError, match="the code expired"):
            await poll_device(table, gone, client)
        wrong = replace(table, client_id="someone-else")
        with pytest.raises(AuthError, match="invalid_client"):
            await start_device(wrong, client)


@pytest.fixture
async def signed_in(
    emu: OAuthEmulator, llm_emulator: LlmEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[CredentialStore, Credential, LlmProvider]:
    """A stored ChatGPT login (an access token, no API key) and the provider built from it."""
    monkeypatch.setenv("OPENPISTA_CREDENTIALS", str(tmp_path / "credentials.toml"))
    store = CredentialStore()
    login = replace(await _stored_login(emu, store), api_key=None, expires_at=time.time() + 3600)
    store.set("openai", login)
    settings = _settings(emu).model_copy(
        update={"providers": {"openai": ProviderSettings(base_url=llm_emulator.openai_base_url)}}
    )
    provider = build_providers(PluginHost.load(entry_points=False)).build(settings, "openai")
    return store, login, provider


async def test_a_running_provider_refreshes_its_login_before_a_request(
    emu: OAuthEmulator,
    llm_emulator: LlmEmulator,
    signed_in: tuple[CredentialStore, Credential, LlmProvider],
) -> None:
    """A daemon built its provider from a login long ago; the token is renewed in flight."""
    store, login, provider = signed_in
    llm_emulator.reply_text("first")
    llm_emulator.reply_text("second")
    await provider.complete([Message(role="user", content="hi")], [])
    assert emu.calls["refresh_token"] == 0
    assert llm_emulator.requests[0].headers["authorization"] == f"Bearer {login.access_token}"

    store.set("openai", replace(login, expires_at=time.time() + 60))  # about to expire
    await provider.complete([Message(role="user", content="again")], [])
    assert emu.calls["refresh_token"] == 1
    renewed = store.get("openai")
    assert renewed is not None
    assert renewed.access_token != login.access_token
    assert llm_emulator.requests[1].headers["authorization"] == f"Bearer {renewed.access_token}"


async def test_a_failed_refresh_in_flight_asks_to_log_in_again(
    emu: OAuthEmulator,
    llm_emulator: LlmEmulator,
    signed_in: tuple[CredentialStore, Credential, LlmProvider],
) -> None:
    store, login, provider = signed_in
    emu.revoke_refresh_tokens()
    store.set("openai", replace(login, expires_at=time.time() - 1))
    with pytest.raises(ProviderError, match="openpista auth login openai") as info:
        await provider.complete([Message(role="user", content="hi")], [])
    assert info.value.kind == "auth"
    assert not llm_emulator.requests, "nothing is sent with an expired token"
