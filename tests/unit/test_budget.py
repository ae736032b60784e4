"""Splitting a run's budget among its tasks."""

from __future__ import annotations

import pytest

from braid.api import Budget, Usage
from braid.plan import Spend, exhausted, share_spent, spent, task_share


def test_spent_sums_cost_and_input_plus_output_tokens():
    usages = [
        Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=5000, cost_usd=0.1),
        Usage(input_tokens=10, output_tokens=5, cost_usd=0.2),
    ]
    assert spent(usages) == Spend(cost_usd=0.3, tokens=1215)
    assert spent([]) == Spend()


def test_spent_rounds_float_noise():
    assert spent([Usage(cost_usd=0.1)] * 3).cost_usd == 0.3


def test_no_budget_is_never_exhausted_and_has_no_share():
    assert not exhausted(None, Spend(cost_usd=1e9, tokens=10**12))
    assert task_share(None, Spend(), Spend(), 3) is None


@pytest.mark.parametrize(
    "budget, used, expected",
    [
        (Budget(max_cost_usd=10), Spend(cost_usd=9.99), False),
        (Budget(max_cost_usd=10), Spend(cost_usd=10), True),
        (Budget(max_cost_usd=10), Spend(cost_usd=12), True),
        (Budget(max_tokens=1000), Spend(tokens=999), False),
        (Budget(max_tokens=1000), Spend(tokens=1000), True),
        (Budget(max_cost_usd=10, max_tokens=1000), Spend(cost_usd=1, tokens=1000), True),
        (Budget(max_cost_usd=10, max_tokens=1000), Spend(cost_usd=10, tokens=1), True),
        (Budget(max_cost_usd=10, max_tokens=1000), Spend(cost_usd=1, tokens=1), False),
        (Budget(), Spend(cost_usd=100, tokens=10**9), False),
    ],
)
def test_exhausted(budget, used, expected):
    assert exhausted(budget, used) is expected


def test_share_splits_what_is_left_among_unstarted_tasks():
    budget = Budget(max_cost_usd=20, max_tokens=1_000_000)
    share = task_share(budget, Spend(cost_usd=4, tokens=100_000), Spend(cost_usd=6, tokens=300_000), unstarted=5)
    assert share.max_cost_usd == pytest.approx(2.0)
    assert share.max_tokens == 120_000


def test_share_with_only_one_limit():
    share = task_share(Budget(max_tokens=1000), Spend(tokens=100), Spend(), unstarted=3)
    assert share.max_tokens == 300 and share.max_cost_usd is None
    share = task_share(Budget(max_cost_usd=9), Spend(), Spend(), unstarted=3)
    assert share.max_cost_usd == pytest.approx(3.0) and share.max_tokens is None


def test_share_of_the_last_task_is_everything_left():
    share = task_share(Budget(max_cost_usd=10, max_tokens=100), Spend(cost_usd=7.5, tokens=60), Spend(), 1)
    assert share.max_cost_usd == pytest.approx(2.5) and share.max_tokens == 40


def test_zero_unstarted_counts_as_one():
    share = task_share(Budget(max_tokens=100), Spend(), Spend(), unstarted=0)
    assert share.max_tokens == 100


def test_share_is_never_zero_or_negative_even_when_overspent():
    share = task_share(Budget(max_cost_usd=10, max_tokens=100), Spend(cost_usd=11, tokens=150), Spend(), 2)
    assert share.max_cost_usd > 0 and share.max_tokens >= 1
    # still a valid Budget for the API (which rejects zero)
    assert Budget.model_validate(share.wire()) == share


def test_shares_handed_out_one_by_one_never_exceed_the_budget():
    budget = Budget(max_cost_usd=12, max_tokens=1200)
    reserved = Spend()
    total_cost, total_tokens = 0.0, 0
    for unstarted in range(4, 0, -1):
        share = task_share(budget, Spend(), reserved, unstarted)
        total_cost += share.max_cost_usd
        total_tokens += share.max_tokens
        reserved = Spend(cost_usd=reserved.cost_usd + share.max_cost_usd, tokens=reserved.tokens + share.max_tokens)
    assert total_cost == pytest.approx(12)
    assert total_tokens <= 1200


def test_a_frugal_task_leaves_its_savings_to_later_tasks():
    budget = Budget(max_cost_usd=10)
    first = task_share(budget, Spend(), Spend(), unstarted=2)
    assert first.max_cost_usd == pytest.approx(5)
    # the first task ended having spent only 1 of its 5
    second = task_share(budget, Spend(cost_usd=1), Spend(), unstarted=1)
    assert second.max_cost_usd == pytest.approx(9)


@pytest.mark.parametrize(
    "usage, share, spent_word",
    [
        (Usage(cost_usd=0.5), None, None),
        (Usage(cost_usd=0.49), Budget(max_cost_usd=0.5), None),
        (Usage(cost_usd=0.5), Budget(max_cost_usd=0.5), "spent $0.5000"),
        (Usage(input_tokens=600, output_tokens=399, cache_read_tokens=10**6), Budget(max_tokens=1000), None),
        (Usage(input_tokens=600, output_tokens=400), Budget(max_tokens=1000), "used 1000 tokens"),
        (Usage(input_tokens=2000, cost_usd=0.01), Budget(max_cost_usd=1, max_tokens=1000), "used 2000 tokens"),
    ],
)
def test_share_spent_is_the_one_rule_every_backend_stops_on(usage, share, spent_word):
    """Cost or input+output tokens reaching the share; cache tokens count only through the cost."""
    why = share_spent(usage, share)
    if spent_word is None:
        assert why is None
    else:
        assert why is not None and why.startswith(spent_word) and "budget share" in why
