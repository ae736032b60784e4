"""Token counts to USD: the built-in table, dated and [1m] model names, and agent.pricing overrides."""

from __future__ import annotations

import pytest

from braid.agents.pricing import BUILTIN_PRICES, Price, price_for, turn_usage
from braid.api import AgentSpec, Pricing
from braid.api.parallelrun import DEFAULT_MODEL


def test_the_default_model_has_a_price() -> None:
    assert price_for(DEFAULT_MODEL) == Price(3, 15, 3.75, 0.3)


@pytest.mark.parametrize("model, base", [
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-sonnet-5-5[1m]", "claude-sonnet-5-5"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
])
def test_dated_and_suffixed_names_use_the_base_price(model: str, base: str) -> None:
    assert price_for(model) == BUILTIN_PRICES[base]


def test_unknown_models_have_no_price() -> None:
    assert price_for("claude-future-9") is None
    assert price_for("gpt-4") is None


def test_cache_prices_follow_the_published_multipliers_where_they_apply() -> None:
    for name in ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"):
        price = BUILTIN_PRICES[name]
        assert price.cache_write == pytest.approx(price.input * 1.25)
        assert price.cache_read == pytest.approx(price.input * 0.1)


def test_overrides_win_and_default_their_cache_prices() -> None:
    overrides = {"claude-sonnet-4-5": Pricing(input=2, output=8), "my-proxy-model": Pricing(
        input=1, output=2, cache_write=3, cache_read=4)}
    assert price_for("claude-sonnet-4-5", overrides) == Price(2, 8, 2.5, 0.2)
    assert price_for("claude-sonnet-4-5-20250929", overrides) == Price(2, 8, 2.5, 0.2)
    assert price_for("my-proxy-model", overrides) == Price(1, 2, 3, 4)
    assert price_for("claude-opus-4-5", overrides) == BUILTIN_PRICES["claude-opus-4-5"]


def test_overrides_come_from_the_spec_in_camel_case() -> None:
    spec = AgentSpec.model_validate({"pricing": {"x-model": {"input": 1, "output": 5, "cacheRead": 0.5}}})
    assert price_for("x-model", spec.pricing) == Price(1, 5, 1.25, 0.5)


def test_turn_usage_prices_every_kind_of_token() -> None:
    usage = turn_usage(Price(3, 15, 3.75, 0.3), input_tokens=1_000, output_tokens=2_000,
                       cache_write_tokens=10_000, cache_read_tokens=100_000)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_write_tokens, usage.cache_read_tokens) == (
        1_000, 2_000, 10_000, 100_000)
    # 0.003 + 0.030 + 0.0375 + 0.030
    assert usage.cost_usd == pytest.approx(0.1005)


def test_turn_usage_without_a_price_costs_nothing() -> None:
    usage = turn_usage(None, 1_000, 1_000, 1_000, 1_000)
    assert usage.cost_usd == 0 and usage.total_tokens == 4_000
