"""The embedder of semantic search (``[memory.embeddings]``): the configured provider's
``embed`` (litellm embeddings), as the memory store's
:class:`~openpista.memory.embeddings.Embedder`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openpista.config import ConfigError

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.memory import MemoryStore
    from openpista.providers.registry import ProviderRegistry


class ProviderEmbedder:
    """Embeds through a built provider; ``model`` is the embedding model's name."""

    def __init__(self, provider: Any, model: str) -> None:
        self.model = model
        self._provider = provider

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order (the provider's errors as it raises them)."""
        vectors: list[list[float]] = await self._provider.embed(texts)
        return vectors


def semantic_search_configured(settings: Settings) -> bool:
    """Whether ``[memory.embeddings]`` names a model (not "none")."""
    return settings.memory.embeddings.model.strip().lower() not in ("", "none")


def build_embedder(settings: Settings, registry: ProviderRegistry) -> ProviderEmbedder | None:
    """The embedder ``[memory.embeddings]`` asks for; None when its model is "none". Raises
    :class:`ConfigError` or :class:`~openpista.providers.base.ProviderError` when the
    provider cannot be built or cannot make embeddings."""
    chosen = settings.memory.embeddings
    if not semantic_search_configured(settings):
        return None
    name = chosen.provider or settings.agent.provider
    provider = registry.build(settings, name, chosen.model)
    if not callable(getattr(provider, "embed", None)):
        raise ConfigError(
            f"the {name} provider cannot make embeddings: set [memory.embeddings] provider to "
            'one that can (an OpenAI-compatible API, through litellm) or model = "none"'
        )
    return ProviderEmbedder(provider, chosen.model)


def enable_semantic_search(
    store: MemoryStore, settings: Settings, registry: ProviderRegistry
) -> str | None:
    """Turn on semantic search in ``store`` as configured; what is wrong (a ❌ line) when
    the embedder cannot be built (the store then searches full-text only)."""
    from openpista.providers.base import ProviderError

    try:
        embedder = build_embedder(settings, registry)
    except (ConfigError, ProviderError) as exc:
        return f"❌ semantic search is off: {exc}"
    if embedder is not None:
        chosen = settings.memory.embeddings
        store.enable_embeddings(embedder, chosen.batch, chosen.min_similarity)
    return None
