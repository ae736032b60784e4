"""What tokens cost: the built-in price table, spec overrides and token -> USD. Used by every backend."""

from __future__ import annotations

import re
from dataclasses import dataclass

from braid.api import Pricing, Usage

# Cache writes are priced at the 5-minute rate because braid asks for the default
# (5-minute) cache lifetime.
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


def _p(input: float, output: float, cache_write: float, cache_read: float) -> Price:
    return Price(input, output, cache_write, cache_read)


# Published list prices of the first-party Claude API (USD per million tokens).
# Haiku 5.5 is priced in two bands by prompt length; the table holds the lower band
# (prompts up to 100k tokens). Use agent.pricing to override any row.
BUILTIN_PRICES: dict[str, Price] = {
    "claude-fable-5-1": _p(10, 50, 12.5, 0.25),
    "claude-mythos-5-1": _p(10, 50, 12.5, 0.25),
    "claude-fable-5": _p(10, 50, 12.5, 1.0),
    "claude-mythos-5": _p(10, 50, 12.5, 1.0),
    "claude-opus-5-5": _p(4, 20, 5, 0.2),
    "claude-opus-5": _p(5, 25, 6.25, 0.5),
    "claude-opus-4-8": _p(5, 25, 6.25, 0.5),
    "claude-opus-4-7": _p(5, 25, 6.25, 0.5),
    "claude-opus-4-6": _p(5, 25, 6.25, 0.5),
    "claude-opus-4-5": _p(5, 25, 6.25, 0.5),
    "claude-opus-4-1": _p(15, 75, 18.75, 1.5),
    "claude-opus-4-0": _p(15, 75, 18.75, 1.5),
    "claude-opus-4": _p(15, 75, 18.75, 1.5),
    "claude-sonnet-5-5": _p(2, 10, 2.5, 0.2),
    "claude-sonnet-5": _p(2, 10, 2.5, 0.2),
    "claude-sonnet-4-6": _p(3, 15, 3.75, 0.3),
    "claude-sonnet-4-5": _p(3, 15, 3.75, 0.3),
    "claude-sonnet-4-0": _p(3, 15, 3.75, 0.3),
    "claude-sonnet-4": _p(3, 15, 3.75, 0.3),
    "claude-haiku-5-5": _p(0.1, 0.5, 0.125, 0.01),
    "claude-haiku-4-5": _p(1, 5, 1.25, 0.1),
    "claude-3-5-haiku": _p(0.8, 4, 1, 0.08),
}

# "claude-sonnet-4-5-20250929" and "claude-sonnet-4-5[1m]" are priced as "claude-sonnet-4-5".
_SUFFIXES = re.compile(r"(-\d{8}|-latest|\[1m\])+$")


def from_override(pricing: Pricing) -> Price:
    cache_write = pricing.cache_write if pricing.cache_write is not None else pricing.input * CACHE_WRITE_FACTOR
    cache_read = pricing.cache_read if pricing.cache_read is not None else pricing.input * CACHE_READ_FACTOR
    return Price(pricing.input, pricing.output, cache_write, cache_read)


def price_for(model: str, overrides: dict[str, Pricing] | None = None) -> Price | None:
    """The price of `model`: an agent.pricing entry first, then the built-in table; None if unknown."""
    base = _SUFFIXES.sub("", model)
    for name in (model, base):
        if overrides and name in overrides:
            return from_override(overrides[name])
    for name in (model, base):
        if name in BUILTIN_PRICES:
            return BUILTIN_PRICES[name]
    return None


def turn_usage(
    price: Price | None,
    input_tokens: int,
    output_tokens: int,
    cache_write_tokens: int = 0,
    cache_read_tokens: int = 0,
) -> Usage:
    """Tokens as braid Usage. Without a price the cost counts them as 0, and `unpricedTokens` says so."""
    cost = 0.0
    unpriced = None
    if price is None:
        unpriced = (input_tokens + output_tokens + cache_write_tokens + cache_read_tokens) or None
    else:
        cost = (
            input_tokens * price.input
            + output_tokens * price.output
            + cache_write_tokens * price.cache_write
            + cache_read_tokens * price.cache_read
        ) / 1_000_000
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_tokens=cache_write_tokens,
        cache_read_tokens=cache_read_tokens,
        cost_usd=round(cost, 6),
        unpriced_tokens=unpriced,
    )
