"""Splitting a run's budget among its tasks. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from braid.api import Budget, Usage

BUDGET_EXCEEDED = "BudgetExceeded"
"""The reason of a task stopped at its share, and of tasks skipped because the run's budget is spent."""


@dataclass(frozen=True)
class Spend:
    """What ended tasks spent plus the shares handed to running ones."""

    cost_usd: float = 0.0
    tokens: int = 0


def spent(usages: list[Usage]) -> Spend:
    return Spend(round(sum(u.cost_usd for u in usages), 6), sum(u.input_tokens + u.output_tokens for u in usages))


def exhausted(budget: Budget | None, used: Spend) -> bool:
    """The run may start no new task."""
    if budget is None:
        return False
    if budget.max_cost_usd is not None and used.cost_usd >= budget.max_cost_usd:
        return True
    return budget.max_tokens is not None and used.tokens >= budget.max_tokens


def share_spent(usage: Usage, share: Budget | None) -> str | None:
    """Why a task has used up its share of the budget (`share`), or None while it has not.

    Every backend stops its agent on this rule. Tokens count as the scheduler counts them
    (input + output); cache reads and writes are in the cost.
    """
    if share is None:
        return None
    if share.max_cost_usd is not None and usage.cost_usd >= share.max_cost_usd:
        return f"spent ${usage.cost_usd:.4f} of this task's budget share of ${share.max_cost_usd:.4f}"
    tokens = usage.input_tokens + usage.output_tokens
    if share.max_tokens is not None and tokens >= share.max_tokens:
        return f"used {tokens} tokens of this task's budget share of {share.max_tokens}"
    return None


def task_share(budget: Budget | None, used: Spend, reserved: Spend, unstarted: int) -> Budget | None:
    """The share of a task starting now: what is left, split evenly among the tasks not yet started.

    `used` is what ended tasks spent, `reserved` the shares of running tasks; a task
    that spends less than its share leaves the rest to the tasks after it.
    """
    if budget is None:
        return None
    n = max(1, unstarted)
    cost = tokens = None
    # never zero: the API rejects a zero budget, and a task started with nothing left
    # stops at its first turn anyway
    if budget.max_cost_usd is not None:
        cost = max((budget.max_cost_usd - used.cost_usd - reserved.cost_usd) / n, 1e-6)
    if budget.max_tokens is not None:
        tokens = max((budget.max_tokens - used.tokens - reserved.tokens) // n, 1)
    return Budget(max_cost_usd=cost, max_tokens=tokens)
