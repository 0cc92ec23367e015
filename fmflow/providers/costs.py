"""What a call costs: USD per 1M input/output tokens for well-known model names.

The table is list prices as published by OpenAI, as of 2025-08. Prices change,
so a model block may override them: ``options: { cost: { input: 0.15,
output: 0.6 } }`` (USD per 1M tokens). A model that is neither in the table
nor priced in its block costs ``None`` (unknown), never 0: a local model may
be free, but a wrong zero in a budget is worse than an honest "unknown".
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["PRICES", "CostError", "cost_of", "price_of"]

# (input, output) USD per 1M tokens. Prices as of 2025-08.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),   # the first gpt-4o snapshot kept its launch price
    "chatgpt-4o-latest": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}

# A prefix matches only up to one of these, so that dated snapshots
# ("gpt-4o-2024-08-06") find their family but "gpt-4" never prices "gpt-4o".
_SEPARATORS = ("-", ":", "@")


class CostError(ValueError):
    """A malformed `cost` option; the message is for users."""


def price_of(model: str | None, table: Mapping[str, tuple[float, float]] = PRICES) -> tuple[float, float] | None:
    """(input, output) per 1M tokens: the exact name, else the longest prefix ending at a separator."""
    if not model:
        return None
    name = model.lower()
    if name in table:
        return table[name]
    matches = [k for k in table if name.startswith(k) and name[len(k)].startswith(_SEPARATORS)]
    return table[max(matches, key=len)] if matches else None


def _override(option: Any, where: str) -> tuple[float, float]:
    def number(key: str) -> float:
        value = option.get(key) if isinstance(option, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise CostError(f"{where}: options.cost needs `{{ input: N, output: N }}` "
                            f"(USD per 1M tokens); `{key}` is {value!r}")
        return float(value)
    return number("input"), number("output")


def cost_of(options: Mapping[str, Any], models: list[str | None], tokens_in: int | None,
            tokens_out: int | None, where: str = "model") -> float | None:
    """USD for one call: the `cost` option if given, else the first of ``models`` the table knows."""
    if tokens_in is None and tokens_out is None:
        return None  # a server that reports no usage: the cost is unknown, not 0
    if options.get("cost") is not None:
        price = _override(options["cost"], where)
    else:
        price = next((p for p in map(price_of, models) if p is not None), None)
    if price is None:
        return None
    return ((tokens_in or 0) * price[0] + (tokens_out or 0) * price[1]) / 1_000_000
