"""The credentials file: mode 0600, atomic writes, refusal of unsafe or corrupt files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from openpista.auth.credentials import AuthError, Credential, CredentialStore
from openpista.config import ConfigError, ProviderSettings, Settings
from openpista.providers.base import ProviderError
from openpista.providers.presets import builtin_presets
from openpista.providers.refreshing import RefreshingProvider
from openpista.providers.registry import ProviderRegistry

SECRET = "sk-very-secret-0123456789"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CredentialStore:
    path = tmp_path / "home" / "credentials.toml"
    monkeypatch.setenv("OPENPISTA_CREDENTIALS", str(path))
    return CredentialStore()


def test_round_trip_mode_0600(store: CredentialStore) -> None:
    oauth = Credential(
        kind="oauth", access_token="at", refresh_token="rt", expires_at=1e10, account_id="a"
    )
    store.set("openai", oauth)
    store.set("anthropic", Credential(kind="api_key", api_key=SECRET))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == {"openai": oauth, "anthropic": Credential("api_key", api_key=SECRET)}
    assert store.get("anthropic") is not None
    assert store.get("together") is None
    assert list(store.path.parent.iterdir()) == [store.path]  # no temp file left behind


def test_write_is_atomic(store: CredentialStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.set("openai", Credential(kind="api_key", api_key="first"))
    before = store.path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.set("openai", Credential(kind="api_key", api_key="second"))
    assert store.path.read_bytes() == before
    assert list(store.path.parent.iterdir()) == [store.path]


def test_remove_one_and_all(store: CredentialStore) -> None:
    store.set("openai", Credential(kind="api_key", api_key="a"))
    store.set("together", Credential(kind="api_key", api_key="b"))
    assert store.remove("openai") == ["openai"]
    assert store.remove("openai") == []
    assert list(store.load()) == ["together"]
    assert store.remove() == ["together"]
    assert not store.path.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_readable_by_others_is_refused(store: CredentialStore, mode: int) -> None:
    store.set("openai", Credential(kind="api_key", api_key=SECRET))
    store.path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        store.load()
    message = str(info.value)
    assert str(store.path) in message
    assert f"chmod 600 {store.path}" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "text",
    [
        "this is [not toml",
        f'[openai]\nkind = "password"\napi_key = "{SECRET}"\n',
        '[openai]\nkind = "oauth"\n',
        f'openai = "{SECRET}"\n',
        f'[openai]\nkind = "api_key"\napi_key = "{SECRET}"\nextra = 1\n',
    ],
)
def test_corrupt_file_is_refused(store: CredentialStore, text: str) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(text)
    store.path.chmod(0o600)
    with pytest.raises(AuthError) as info:
        store.load()
    message = str(info.value)
    assert str(store.path) in message
    assert "delete it" in message
    assert SECRET not in message
    with pytest.raises(AuthError):  # never silently overwritten either
        store.set("openai", Credential(kind="api_key", api_key="x"))
    assert store.path.read_text() == text


def test_repr_masks_secrets() -> None:
    credential = Credential(
        kind="oauth",
        access_token=SECRET,
        refresh_token=SECRET + "r",
        id_token=SECRET + "i",
        expires_at=5.0,
        account_id="acct",
    )
    for text in (repr(credential), str(credential), f"{credential}", repr({"x": credential})):
        assert SECRET not in text
        assert "***" in text
        assert "acct" in text


def test_registry_key_order(store: CredentialStore, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ProviderRegistry()
    for preset in builtin_presets():
        registry.register(preset)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert _key(registry, Settings()) == "from-env"
    store.set("openai", Credential(kind="api_key", api_key="from-store"))
    assert _key(registry, Settings()) == "from-store"
    store.set("openai", Credential(kind="oauth", access_token="from-login", account_id="acct-1"))
    assert _key(registry, Settings()) == "from-login"
    signed_in = registry.build(Settings(), "openai")
    assert isinstance(signed_in, RefreshingProvider), "a login is kept fresh"
    assert signed_in.inner.settings.account_id == "acct-1"  # type: ignore[attr-defined]
    configured = Settings(providers={"openai": ProviderSettings(api_key=SecretStr("from-config"))})
    assert _key(registry, configured) == "from-config"
    monkeypatch.delenv("OPENAI_API_KEY")
    store.remove()
    with pytest.raises(ProviderError, match="openpista auth login openai"):
        registry.build(Settings(), "openai")
    # A broken file does not stop a provider that needs no key.
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("broken [")
    store.path.chmod(0o600)
    assert registry.build(Settings(), "ollama").name == "ollama"
    with pytest.raises(ConfigError, match="corrupt"):
        registry.build(Settings(), "openai")


def _key(registry: ProviderRegistry, settings: Settings) -> str:
    provider = registry.build(settings, "openai")
    if isinstance(provider, RefreshingProvider):
        provider = provider.inner
    key = provider.settings.api_key  # type: ignore[attr-defined]
    assert key is not None
    return str(key.get_secret_value())
