"""Where each provider's key comes from: config, a stored login, the environment, or nowhere.

``openpista auth status`` and ``openpista model list`` show the same answer, in the order the
provider registry uses the sources (config, then stored, then environment).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpista.auth.credentials import Credential
    from openpista.config import Settings
    from openpista.providers.base import ProviderPreset

log = logging.getLogger(__name__)


def key_status(
    preset: ProviderPreset, settings: Settings, stored: dict[str, Credential]
) -> dict[str, Any]:
    """The key status of ``preset`` as a JSON-ready row (``source``: config/stored/env/none)."""
    from openpista.auth.providers import oauth_provider

    credential = next((stored[n] for n in (preset.name, *preset.aliases) if n in stored), None)
    env = next((var for var in preset.api_key_env if os.environ.get(var)), None)
    if settings.provider_settings(preset.name).api_key is not None:
        source, kind = "config", "api_key"
    elif credential is not None:
        source, kind = "stored", credential.kind
    elif env is not None:
        source, kind = "env", "api_key"
    else:
        source, kind = "none", None
    from_store = credential is not None and source == "stored"
    return {
        "provider": preset.name,
        "source": source,
        "kind": kind,
        "env": env if source == "env" else None,
        "expires_at": expiry_text(credential) if from_store else None,
        "expired": from_store and credential is not None and credential.expires_within(0),
        "needs_key": preset.requires_api_key,
        "login_methods": ["oauth", "api_key"]
        if oauth_provider(preset.name) is not None
        else ["api_key"],
    }


def describe_key(row: dict[str, Any]) -> str:
    """One line for a :func:`key_status` row: ``stored oauth, expires 2026-...``."""
    detail = {
        "config": "key in config",
        "stored": f"stored {row['kind']}",
        "env": f"key from ${row['env']}",
        "none": "not logged in" if row["needs_key"] else "no key needed",
    }[row["source"]]
    if row["expires_at"]:
        word = "expired" if row["expired"] else "expires"
        detail += f", {word} {row['expires_at']}"
    return str(detail)


def key_summary(preset: ProviderPreset, settings: Settings, stored: dict[str, Credential]) -> str:
    """Like :func:`describe_key`, and when no key is found anywhere, how to get one."""
    row = key_status(preset, settings, stored)
    if row["source"] == "none" and row["needs_key"]:
        hint = f"set ${preset.api_key_env[0]} or " if preset.api_key_env else ""
        return f"no key: {hint}run `openpista auth login {preset.name}`"
    return describe_key(row)


def stored_logins() -> dict[str, Credential]:
    """What ``openpista auth login`` stored; a damaged file is logged and reads as empty
    (listing providers must not stop on it; ``openpista auth status`` reports it)."""
    from openpista.auth.credentials import AuthError, CredentialStore

    try:
        return CredentialStore().load()
    except AuthError as exc:
        log.warning("%s", exc)
        return {}


def expiry_text(credential: Credential | None) -> str | None:
    """When ``credential`` expires, in local time (``None`` if it does not)."""
    if credential is None or credential.expires_at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(credential.expires_at))
