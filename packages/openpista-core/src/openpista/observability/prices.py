"""What an LLM response cost: ``[budget.prices]`` first, else litellm's local price map.

The price map is litellm's local model map (:mod:`openpista.model_map`): read from disk,
never downloaded, litellm itself not imported.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

from openpista.model_map import litellm_model_map, model_names

if TYPE_CHECKING:
    from openpista.config import ModelPrice
    from openpista.models import Usage

PER_MILLION = 1_000_000

Price = tuple[float, float]
"""USD per token: ``(input, output)``."""


@functools.cache
def litellm_prices() -> dict[str, Price]:
    """litellm's price map as ``model -> (input, output)`` USD per token (empty when
    litellm or its map is missing or unreadable: costs are then unknown, and logged once)."""
    prices: dict[str, Price] = {}
    for name, entry in litellm_model_map().items():
        cost_in, cost_out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if isinstance(cost_in, int | float) and isinstance(cost_out, int | float):
            prices[name] = (float(cost_in), float(cost_out))
    return prices


class PriceBook:
    """Prices of models: the configured ones (USD per million tokens), then litellm's."""

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self._overrides: dict[str, Price] = {
            name: (price.input / PER_MILLION, price.output / PER_MILLION)
            for name, price in (overrides or {}).items()
        }

    def price(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` served by ``provider``, or ``None`` if it is unknown.

        Looked up as ``provider/model``, then ``model``, then the model's last path part
        (``openrouter/openai/gpt-4o`` is priced as ``gpt-4o`` when nothing closer is known);
        a configured price wins over litellm's for the same name.
        """
        names = model_names(model, provider)
        for name in names:
            if name in self._overrides:
                return self._overrides[name]
        known = litellm_prices()
        return next((known[name] for name in names if name in known), None)

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """USD of ``usage`` with ``model``, or ``None`` if its price is unknown."""
        price = self.price(provider, model)
        if price is None:
            return None
        return usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]
