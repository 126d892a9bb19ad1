"""Built-in plugin: the litellm provider presets (openai, anthropic, ollama, ...)."""

from __future__ import annotations

from collections.abc import Callable

from openpista import hookimpl
from openpista.providers.base import ProviderPreset


@hookimpl
def register_providers(register: Callable[[ProviderPreset], None]) -> None:
    """Register every preset of :func:`openpista.providers.presets.builtin_presets`."""
    from openpista.providers.presets import builtin_presets

    for preset in builtin_presets():
        register(preset)
