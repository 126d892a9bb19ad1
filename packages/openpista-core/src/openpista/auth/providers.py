"""How each provider signs users in: one table per provider, overridable in ``[auth.<name>]``.

``flavor`` is the protocol: ``oauth2`` is RFC 6749 Authorization Code with PKCE (S256)
(OpenAI's ChatGPT sign-in, as used by the Codex CLI); ``openrouter`` is OpenRouter's PKCE
variant, whose exchange returns a long-lived API key instead of tokens; ``device`` is the
OAuth device-code flow (RFC 8628, GitHub), whose token is then exchanged at ``exchange_url``
for a short-lived Copilot session token (for it ``authorize_url`` is the device authorization
endpoint, and refreshing means exchanging the GitHub token again). A provider that is
not in :data:`OAUTH_PROVIDERS` takes an API key only (Anthropic's consumer terms forbid
Claude subscription tokens in third-party tools, so there is deliberately no entry for it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from openpista.config import Settings

Flavor = Literal["oauth2", "openrouter", "device"]


@dataclass(frozen=True)
class OAuthProvider:
    """Endpoints, client id and scopes of one provider's sign-in."""

    name: str
    flavor: Flavor
    client_id: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    callback_port: int = 0  # 0: a random free port on 127.0.0.1
    callback_path: str = "/auth/callback"
    extra_params: tuple[tuple[str, str], ...] = ()
    exchange_url: str = ""
    api_key_exchange: bool = False  # trade the id_token for an API key (OpenAI)


OAUTH_PROVIDERS: dict[str, OAuthProvider] = {
    "openai": OAuthProvider(
        name="openai",
        flavor="oauth2",
        # The public client of OpenAI's Codex CLI; its registered redirect is port 1455.
        client_id="app_EMoamEEZ73f0CkXaXp7hrann",
        authorize_url="https://auth.openai.com/oauth/authorize",
        token_url="https://auth.openai.com/oauth/token",  # noqa: S106  an endpoint URL, not a secret
        scopes=("openid", "profile", "email", "offline_access"),
        callback_port=1455,
        callback_path="/auth/callback",
        extra_params=(
            ("id_token_add_organizations", "true"),
            ("codex_cli_simplified_flow", "true"),
        ),
        api_key_exchange=True,
    ),
    "github_copilot": OAuthProvider(
        name="github_copilot",
        flavor="device",
        # The public GitHub OAuth app of the Copilot editor plugins.
        client_id="Iv1.b507a08c87ecfe98",
        authorize_url="https://github.com/login/device/code",
        token_url="https://github.com/login/oauth/access_token",  # noqa: S106  an endpoint URL, not a secret
        scopes=("read:user",),
        exchange_url="https://api.github.com/copilot_internal/v2/token",
    ),
    "openrouter": OAuthProvider(
        name="openrouter",
        flavor="openrouter",
        client_id="openpista",
        authorize_url="https://openrouter.ai/auth",
        token_url="https://openrouter.ai/api/v1/auth/keys",  # noqa: S106  an endpoint URL, not a secret
        callback_port=0,
        callback_path="/callback",
    ),
}


def oauth_provider(name: str, settings: Settings | None = None) -> OAuthProvider | None:
    """The sign-in table of ``name`` with ``[auth.<name>]`` applied; ``None``: API key only."""
    base = OAUTH_PROVIDERS.get(name)
    if base is None:
        return None
    override = settings.auth.get(name) if settings is not None else None
    if override is None:
        return base
    changes = override.model_dump(exclude_none=True)
    if "scopes" in changes:
        changes["scopes"] = tuple(changes["scopes"])
    return replace(base, **changes)
