"""Token prices per model, and the cost of a request in US dollars.

This module owns the editable price table. It does not know what a provider bills for
cached input, batch requests or reasoning tokens: every input token is charged at the
input price and every output token at the output price.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

logger = logging.getLogger(__name__)

# Model name -> (USD per 1M input tokens, USD per 1M output tokens), standard tier.
# NOTE: list prices of OpenAI's standard tier as quoted by public price guides in 2026;
# check the provider's price page before relying on a budget, and edit this table (or pass
# `prices=` to the teacher) when they change. Local servers (vLLM, Ollama, llama.cpp) are
# free, so their models fall through to price 0.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}

_warned_models: set[str] = set()
_warned_lock = threading.Lock()


def price_for(
    model: str, *, prices: Mapping[str, tuple[float, float]] | None = None
) -> tuple[float, float]:
    """Look up the price of a model.

    An exact match wins. Otherwise the longest table key that prefixes `model` is used,
    so a dated snapshot such as ``gpt-4o-mini-2024-07-18`` gets the ``gpt-4o-mini`` price.
    A model that matches nothing costs 0, with one warning per model per process.

    Parameters
    ----------
    model : str
        Model name as sent to the server.
    prices : mapping, optional
        Table to search instead of `PRICES`.

    Returns
    -------
    tuple of float
        (USD per 1M input tokens, USD per 1M output tokens).
    """
    table = PRICES if prices is None else prices
    if model in table:
        return _checked(model, table[model])
    prefixes = [key for key in table if model.startswith(key)]
    if prefixes:
        best = max(prefixes, key=len)
        return _checked(best, table[best])
    with _warned_lock:
        first_time = model not in _warned_models
        _warned_models.add(model)
    if first_time:
        logger.warning(
            "no price known for model %r: its cost is counted as 0 and no budget can stop it; "
            "add it to gcp.teachers.pricing.PRICES or pass prices= to the teacher",
            model,
        )
    return (0.0, 0.0)


def _checked(model: str, price: tuple[float, float]) -> tuple[float, float]:
    input_price, output_price = (float(p) for p in price)
    if input_price < 0 or output_price < 0:
        raise ValueError(f"negative price {price!r} for model {model!r}")
    return (input_price, output_price)


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> float:
    """Return the cost in USD of `input_tokens` and `output_tokens` on `model`."""
    input_price, output_price = price_for(model, prices=prices)
    return (input_tokens * input_price + output_tokens * output_price) / 1_000_000
