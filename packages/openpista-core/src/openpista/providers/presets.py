"""The built-in provider presets, each served by :class:`LiteLLMProvider`.

A preset is a name users write in ``[agent] provider = "..."``; it fixes litellm's model
prefix, where the API key comes from and the default URL. Nothing here imports litellm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista.providers.base import LlmProvider, ProviderPreset
from openpista.providers.litellm_provider import Backend, LiteLLMProvider, ModelsApi

if TYPE_CHECKING:
    from openpista.config import ProviderSettings


def litellm_preset(
    name: str,
    *,
    prefix: str,
    default_model: str,
    description: str,
    aliases: tuple[str, ...] = (),
    api_key_env: tuple[str, ...] = (),
    base_url: str | None = None,
    requires_base_url: bool = False,
    requires_api_key: bool = True,
    models_api: ModelsApi | None = "openai",
    local: bool = False,
    models: tuple[str, ...] = (),
) -> ProviderPreset:
    """A :class:`ProviderPreset` whose factory builds a :class:`LiteLLMProvider`."""
    backend = Backend(
        preset=name,
        prefix=prefix,
        key_env=api_key_env,
        needs_key=requires_api_key,
        models_api=models_api,
        local=local,
        static_models=models or (default_model,),
    )

    def factory(settings: ProviderSettings, model: str | None) -> LlmProvider:
        # The registry fills base_url too; this keeps a direct factory call equally complete.
        if settings.base_url is None and base_url is not None:
            settings = settings.model_copy(update={"base_url": base_url})
        return LiteLLMProvider(backend, settings, model or settings.model or default_model)

    return ProviderPreset(
        name=name,
        factory=factory,
        default_model=default_model,
        aliases=aliases,
        api_key_env=api_key_env,
        default_base_url=base_url,
        requires_base_url=requires_base_url,
        requires_api_key=requires_api_key,
        models=models,
        description=description,
    )


def builtin_presets() -> list[ProviderPreset]:
    """Every preset core ships: openai, anthropic, together, ollama, openrouter, custom."""
    return [
        litellm_preset(
            "openai",
            prefix="openai/",
            default_model="gpt-4o-mini",
            description="OpenAI API (api.openai.com)",
            api_key_env=("OPENAI_API_KEY",),
            base_url="https://api.openai.com/v1",
            models=("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini"),
        ),
        litellm_preset(
            "anthropic",
            prefix="anthropic/",
            default_model="claude-3-5-haiku-latest",
            description="Anthropic API (Claude models)",
            aliases=("claude",),
            api_key_env=("ANTHROPIC_API_KEY",),
            # litellm's Anthropic api_base is the server root: it appends /v1/messages.
            base_url="https://api.anthropic.com",
            models_api="anthropic",
            models=("claude-3-5-haiku-latest", "claude-sonnet-4-0", "claude-opus-4-0"),
        ),
        litellm_preset(
            "together",
            prefix="together_ai/",
            default_model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
            description="Together AI (open-weight models)",
            api_key_env=("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
            base_url="https://api.together.xyz/v1",
            models=("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-72B-Instruct-Turbo"),
        ),
        litellm_preset(
            "ollama",
            prefix="ollama_chat/",
            default_model="llama3.1",
            description="Ollama on this machine (no API key)",
            base_url="http://127.0.0.1:11434",
            requires_api_key=False,
            models_api="ollama",
            local=True,
            models=("llama3.1", "qwen2.5", "mistral"),
        ),
        litellm_preset(
            "openrouter",
            prefix="openrouter/",
            default_model="openai/gpt-4o-mini",
            description="OpenRouter (many vendors behind one key)",
            api_key_env=("OPENROUTER_API_KEY",),
            base_url="https://openrouter.ai/api/v1",
            models=(
                "openai/gpt-4o-mini",
                "anthropic/claude-3.5-haiku",
                "meta-llama/llama-3.3-70b-instruct",
            ),
        ),
        litellm_preset(
            "custom",
            prefix="openai/",
            default_model="default",
            description="any OpenAI-compatible server ([providers.custom] base_url)",
            requires_base_url=True,
            requires_api_key=False,
            local=True,
        ),
    ]
