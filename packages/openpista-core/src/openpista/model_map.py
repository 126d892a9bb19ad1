"""litellm's local model map: prices and context windows without importing litellm.

The map is the JSON file litellm ships (``model_prices_and_context_window_backup.json``),
found beside the package without running its ``__init__`` (which takes seconds) and never
downloaded. It is parsed once (about 3 MB), by whoever asks first: the cost of an LLM
response, or the context window of a session long enough to need it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAP_FILE = "model_prices_and_context_window_backup.json"


@functools.cache
def litellm_model_map() -> dict[str, dict[str, Any]]:
    """Every model litellm knows, by name (empty when litellm or its map is missing or
    unreadable; logged once)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        log.warning("litellm is not installed: model prices and context windows are unknown")
        return {}
    path = Path(spec.origin).parent / MAP_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read litellm's model map %s: %s", path, exc)
        return {}
    if not isinstance(entries, dict):
        return {}
    return {name: entry for name, entry in entries.items() if isinstance(entry, dict)}


def model_names(model: str, provider: str | None = None) -> list[str]:
    """The names ``model`` may have in the map, closest first: ``provider/model``, the
    model as given, then its last path part (``openrouter/openai/gpt-4o``: ``gpt-4o``)."""
    names = [f"{provider}/{model}"] if provider else []
    return [*names, model, model.rsplit("/", 1)[-1]]


def context_window(model: str) -> int | None:
    """The input-token limit the map gives ``model`` (``max_input_tokens``, else
    ``max_tokens``); ``None`` when the map does not know it."""
    entries = litellm_model_map()
    for name in model_names(model):
        entry = entries.get(name)
        if entry is None:
            continue
        limit = entry.get("max_input_tokens") or entry.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            return limit
    return None
