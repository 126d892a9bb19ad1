"""Provider presets collected from plugins, and building a provider from the configuration."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import SecretStr

from openpista.config import ConfigError
from openpista.providers.base import LlmProvider, ProviderError, ProviderPreset, close_provider

if TYPE_CHECKING:
    import pluggy

    from openpista.auth.credentials import Credential
    from openpista.config import ProviderSettings, Settings


class ProviderRegistry:
    """Presets by name and alias. A duplicate name is a recorded problem; the first one wins."""

    def __init__(self) -> None:
        self._presets: dict[str, ProviderPreset] = {}  # primary names, registration order
        self._lookup: dict[str, ProviderPreset] = {}  # names and aliases, lower case
        self.problems: list[str] = []
        self._built: list[LlmProvider] = []  # closed by aclose()

    @classmethod
    def from_plugins(cls, pm: pluggy.PluginManager) -> ProviderRegistry:
        """Collect the presets of every plugin's ``register_providers`` hook."""
        registry = cls()
        pm.hook.register_providers(register=registry.register)
        return registry

    def register(self, preset: ProviderPreset) -> None:
        """Add ``preset``; names or aliases already taken are reported in :attr:`problems`."""
        key = preset.name.lower()
        if key in self._lookup:
            self.problems.append(
                f"provider '{preset.name}' is registered twice; the first one is kept "
                f"({self._lookup[key].description or self._lookup[key].name})"
            )
            return
        self._presets[preset.name] = preset
        self._lookup[key] = preset
        for alias in preset.aliases:
            if alias.lower() in self._lookup:
                self.problems.append(
                    f"provider alias '{alias}' of '{preset.name}' is already taken by "
                    f"'{self._lookup[alias.lower()].name}'; the alias is ignored"
                )
            else:
                self._lookup[alias.lower()] = preset

    def names(self) -> list[str]:
        """Primary preset names, in registration order (aliases are left out)."""
        return list(self._presets)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup

    def get(self, name: str) -> ProviderPreset:
        """The preset called ``name`` (or having it as an alias)."""
        preset = self._lookup.get(name.lower())
        if preset is None:
            raise ConfigError(f"unknown provider '{name}'; available: {', '.join(self.names())}")
        return preset

    def build(
        self, settings: Settings, name: str | None = None, model: str | None = None
    ) -> LlmProvider:
        """A provider for preset ``name`` (default ``[agent] provider``) and ``model``.

        The model is, in order: ``model``, ``[agent] model`` (when ``name`` is the agent's
        provider), ``[providers.<name>] model``, the preset's default. The key is
        ``[providers.<name>] api_key``, else the credential stored by ``openpista auth login``,
        else the preset's environment variables. Raises
        :class:`ConfigError` for an unknown name and :class:`ProviderError` (kind
        ``config``) when a required key or base URL is missing.
        """
        preset = self.get(name or settings.agent.provider)
        section = _section(settings, preset)
        agent_model = settings.agent.model if self._is_agent_provider(settings, preset) else None
        chosen = model or agent_model or section.model or preset.default_model
        update: dict[str, object] = {"model": chosen}
        if section.base_url is None and preset.default_base_url:
            update["base_url"] = preset.default_base_url
        wants_key = preset.requires_api_key or bool(preset.api_key_env)
        login = stored_credential(preset) if wants_key else None
        credential = login[1] if login is not None else None
        if credential is not None and section.account_id is None and credential.account_id:
            update["account_id"] = credential.account_id  # ChatGPT subscription sign-in
        from_login = False
        if section.api_key is None:
            stored = credential.secret if credential is not None else None
            from_login = stored is not None
            key = stored or next(
                (os.environ[env] for env in preset.api_key_env if os.environ.get(env)), None
            )
            update["api_key"] = SecretStr(key) if key else None
        resolved = section.model_copy(update=update)
        if preset.requires_base_url and not resolved.base_url:
            raise ProviderError("config", _missing_base_url(preset))
        if preset.requires_api_key and resolved.api_key is None:
            raise ProviderError("config", _missing_key(preset))
        provider = preset.factory(resolved, chosen)
        if not (from_login and login is not None and login[1].kind == "oauth"):
            return self._opened(provider)
        # An OAuth login expires: keep it fresh for as long as this provider is used.
        from openpista.providers.refreshing import RefreshingProvider

        def rebuild(token: str) -> LlmProvider:
            return preset.factory(resolved.model_copy(update={"api_key": SecretStr(token)}), chosen)

        refreshing = RefreshingProvider(
            provider,
            credential_name=login[0],
            token=login[1].secret or "",
            rebuild=rebuild,
            settings=settings,
        )
        return self._opened(refreshing)

    def _opened(self, provider: LlmProvider) -> LlmProvider:
        if hasattr(provider, "aclose"):
            self._built.append(provider)
        return provider

    async def aclose(self) -> None:
        """Close every provider :meth:`build` made (their connection pools)."""
        built, self._built = self._built, []
        for provider in built:
            await close_provider(provider)

    def _is_agent_provider(self, settings: Settings, preset: ProviderPreset) -> bool:
        return self._lookup.get(settings.agent.provider.lower()) is preset


def _section(settings: Settings, preset: ProviderPreset) -> ProviderSettings:
    """``[providers.<name>]``, also found under one of the preset's aliases."""
    for key in (preset.name, *preset.aliases):
        if key in settings.providers:
            return settings.providers[key]
    return settings.provider_settings(preset.name)


def stored_credential(preset: ProviderPreset) -> tuple[str, Credential] | None:
    """What ``openpista auth login`` stored for ``preset`` (or one of its aliases), with the
    name it is stored under."""
    from openpista.auth.credentials import CredentialStore

    stored = CredentialStore().load()
    return next(((n, stored[n]) for n in (preset.name, *preset.aliases) if n in stored), None)


def _missing_key(preset: ProviderPreset) -> str:
    env = " or ".join(preset.api_key_env) or "an API key"
    return (
        f"no API key for {preset.name}. Either:\n"
        f"  set {env} (or [providers.{preset.name}] api_key), run "
        f"`openpista auth login {preset.name}` or `openpista init`,\n"
        '  or use a local OpenAI-compatible server such as Ollama: [agent] provider = "ollama"'
    )


def _missing_base_url(preset: ProviderPreset) -> str:
    return (
        f"the {preset.name} provider needs the URL of an OpenAI-compatible server: set "
        f'[providers.{preset.name}] base_url, e.g. "http://127.0.0.1:8000/v1"'
    )
