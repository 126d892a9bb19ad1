"""The built-in provider presets, served by :class:`LiteLLMProvider` or, for those whose API
speaks OpenAI chat completions or Anthropic messages, by :class:`HttpChatProvider` or
:class:`AnthropicMessagesProvider` (``[providers.<name>] client``).

A preset is a name users write in ``[agent] provider = "..."``; it fixes litellm's model
prefix, where the API key comes from and the default URL. Nothing here imports litellm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista.providers.base import LlmProvider, ProviderError, ProviderPreset
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
    headers: tuple[tuple[str, str], ...] = (),
    keyless_placeholder: bool = True,
    responses: bool = False,
    chat_completions: bool = False,
    messages_api: bool = False,
) -> ProviderPreset:
    """A :class:`ProviderPreset` whose factory builds a :class:`LiteLLMProvider`, or with
    ``chat_completions`` (the API is OpenAI-compatible chat completions at
    ``{base_url}/chat/completions``) an :class:`HttpChatProvider`, with ``messages_api``
    (Anthropic's ``{base_url}/v1/messages``) an :class:`AnthropicMessagesProvider`, unless
    ``client = "litellm"``.
    """
    backend = Backend(
        preset=name,
        prefix=prefix,
        key_env=api_key_env,
        needs_key=requires_api_key,
        models_api=models_api,
        local=local,
        static_models=models or (default_model,),
        headers=headers,
        keyless_placeholder=keyless_placeholder,
    )

    def factory(settings: ProviderSettings, model: str | None) -> LlmProvider:
        # The registry fills base_url too; this keeps a direct factory call equally complete.
        if settings.base_url is None and base_url is not None:
            settings = settings.model_copy(update={"base_url": base_url})
        chosen = model or settings.model or default_model
        wants_responses = responses and settings.api == "responses"
        lean = messages_api or (chat_completions and not wants_responses)
        if settings.client == "http" and not lean:
            raise ProviderError("config", _litellm_only(name, settings.api))
        if lean and (settings.client == "http" or (settings.client == "auto" and AUTO_HTTP)):
            if messages_api:
                from openpista.providers.anthropic_messages import AnthropicMessagesProvider

                return AnthropicMessagesProvider(backend, settings, chosen)
            from openpista.providers.openai_chat import HttpChatProvider

            return HttpChatProvider(backend, settings, chosen)
        if wants_responses:
            from openpista.providers.responses import ResponsesProvider

            return ResponsesProvider(backend, settings, chosen)
        return LiteLLMProvider(backend, settings, chosen)

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


AUTO_HTTP = True
"""``client = "auto"`` picks the httpx path where it can: it costs a fraction of litellm's
CPU per message and start-up (the figures are in docs/providers.md)."""


def _litellm_only(name: str, api: str) -> str:
    what = "the Responses API" if api == "responses" else f"{name}'s API"
    return (
        f'[providers.{name}] client = "http" serves OpenAI-compatible chat completions and '
        f'Anthropic messages only, and {what} is neither: remove the line or set client = "litellm"'
    )


def builtin_presets() -> list[ProviderPreset]:
    """Every preset core ships: openai, anthropic, together, ollama, openrouter, custom,
    and the extended credential slots (:func:`extended_presets`)."""
    return [*_core_presets(), *extended_presets()]


def extended_presets() -> list[ProviderPreset]:
    """GitHub Copilot, Google Gemini, Vercel AI Gateway, Azure OpenAI and AWS Bedrock."""
    return [
        litellm_preset(
            "github_copilot",
            # Copilot's chat API is OpenAI-compatible; the key is a Copilot session token
            # (from `openpista auth login github_copilot` or GITHUB_COPILOT_TOKEN).
            prefix="openai/",
            default_model="gpt-4o",
            description="GitHub Copilot subscription (api.githubcopilot.com)",
            aliases=("copilot",),
            api_key_env=("GITHUB_COPILOT_TOKEN",),
            base_url="https://api.githubcopilot.com",
            headers=COPILOT_HEADERS,
            models=("gpt-4o", "gpt-4.1", "claude-sonnet-4", "gemini-2.0-flash-001"),
            chat_completions=True,
        ),
        litellm_preset(
            "gemini",
            prefix="gemini/",
            default_model="gemini-2.0-flash",
            description="Google Gemini API (AI Studio key)",
            aliases=("google",),
            api_key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
            models_api=None,
            models=("gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro"),
        ),
        litellm_preset(
            "vercel_ai_gateway",
            prefix="openai/",
            default_model="openai/gpt-4o-mini",
            description="Vercel AI Gateway (ai-gateway.vercel.sh)",
            aliases=("vercel",),
            api_key_env=("AI_GATEWAY_API_KEY", "VERCEL_AI_GATEWAY_API_KEY"),
            base_url="https://ai-gateway.vercel.sh/v1",
            models=("openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "google/gemini-2.0-flash"),
            chat_completions=True,
        ),
        litellm_preset(
            "azure",
            # model = the deployment name; base_url = https://<resource>.openai.azure.com;
            # [providers.azure] api_version (else AZURE_API_VERSION, else litellm's default).
            prefix="azure/",
            default_model="gpt-4o-mini",
            description="Azure OpenAI ([providers.azure] base_url = your resource endpoint)",
            api_key_env=("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
            requires_base_url=True,
            models_api=None,
            models=("gpt-4o-mini", "gpt-4o"),
        ),
        litellm_preset(
            "bedrock",
            # Credentials are AWS's own (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile,
            # AWS_REGION_NAME), read by litellm; an api_key is sent as a Bedrock API key.
            prefix="bedrock/",
            default_model="anthropic.claude-3-5-haiku-20241022-v1:0",
            description="AWS Bedrock (AWS credentials from the environment)",
            aliases=("aws",),
            api_key_env=("AWS_BEARER_TOKEN_BEDROCK",),
            requires_api_key=False,
            keyless_placeholder=False,
            models_api=None,
            models=(
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
                "amazon.nova-pro-v1:0",
            ),
        ),
    ]


COPILOT_HEADERS = (
    ("Copilot-Integration-Id", "vscode-chat"),
    ("Editor-Version", "openpista/1"),
)
"""Headers api.githubcopilot.com requires of every chat request."""


def _core_presets() -> list[ProviderPreset]:
    return [
        litellm_preset(
            "openai",
            prefix="openai/",
            default_model="gpt-4o-mini",
            description="OpenAI API (api.openai.com)",
            api_key_env=("OPENAI_API_KEY",),
            base_url="https://api.openai.com/v1",
            models=("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini"),
            responses=True,  # [providers.openai] api = "responses"
            chat_completions=True,
        ),
        litellm_preset(
            "anthropic",
            prefix="anthropic/",
            default_model="claude-3-5-haiku-latest",
            description="Anthropic API (Claude models)",
            aliases=("claude",),
            api_key_env=("ANTHROPIC_API_KEY",),
            # The server root, as litellm's Anthropic api_base: both append /v1/messages.
            base_url="https://api.anthropic.com",
            models_api="anthropic",
            models=("claude-3-5-haiku-latest", "claude-sonnet-4-0", "claude-opus-4-0"),
            messages_api=True,
        ),
        litellm_preset(
            "together",
            prefix="together_ai/",
            default_model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
            description="Together AI (open-weight models)",
            api_key_env=("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
            base_url="https://api.together.xyz/v1",
            models=("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-72B-Instruct-Turbo"),
            chat_completions=True,
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
            chat_completions=True,
        ),
        litellm_preset(
            "custom",
            prefix="openai/",
            default_model="default",
            description="any OpenAI-compatible server ([providers.custom] base_url)",
            requires_base_url=True,
            requires_api_key=False,
            local=True,
            chat_completions=True,
        ),
    ]
