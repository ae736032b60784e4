"""What may start now: DAG-driven admission under maxParallel and the budget, in the order
the run's scheduling strategy gives. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args

from braid.api.parallelrun import Strategy

from .budget import BUDGET_EXCEEDED
from .dag import Node, critical_path, dependents, topological_order

# A sort key per task: ready tasks start in ascending order of it.
Rank = Mapping[str, tuple[float, ...]]

ENDED = frozenset({"Succeeded", "Failed", "Skipped", "Cancelled"})
BLOCKING = frozenset({"Failed", "Skipped", "Cancelled"})


@dataclass(frozen=True)
class Skip:
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    start: list[str] = field(default_factory=list)
    """Tasks to start now, most urgent first."""
    skip: dict[str, Skip] = field(default_factory=dict)
    """Pending tasks that can never run, with why."""
    all_ended: bool = False
    """Every task has ended (after applying `skip`): time to merge."""


def decide(
    nodes: Sequence[Node],
    phases: Mapping[str, str],
    max_parallel: int,
    *,
    budget_exhausted: bool = False,
    suspended: bool = False,
    rank: Rank | None = None,
) -> Decision:
    """Decide which pending tasks start and which are skipped.

    A task starts as soon as its own dependencies have succeeded and a slot is free;
    there are no batches. Ready tasks start in the order of `rank` (see `ranks`); without
    one, the longest remaining critical path goes first. Ties go by name, so the decision
    is deterministic.
    """
    phase = {n.name: phases.get(n.name, "Pending") for n in nodes}
    deps = {n.name: n.depends_on for n in nodes}
    skip: dict[str, Skip] = {}

    for name in topological_order(nodes):
        if phase[name] != "Pending":
            continue
        blocked = [d for d in deps[name] if phase[d] in BLOCKING]
        if blocked:
            first = sorted(blocked)[0]
            skip[name] = Skip("DependencyFailed", f"dependency {first!r} {phase[first]}")
            phase[name] = "Skipped"

    ready = [
        name
        for name in phase
        if phase[name] == "Pending" and all(phase[d] == "Succeeded" for d in deps[name])
    ]
    start: list[str] = []
    if budget_exhausted:
        for name in phase:
            if phase[name] == "Pending":
                skip[name] = Skip(BUDGET_EXCEEDED, "the run's budget is spent")
                phase[name] = "Skipped"
    elif not suspended and ready:
        running = sum(1 for p in phase.values() if p == "Running")
        slots = max(0, max_parallel - running)
        order = rank if rank is not None else {n: (-float(c),) for n, c in critical_path(nodes).items()}
        ready.sort(key=lambda n: (order[n], n))
        start = ready[:slots]

    all_ended = not start and all(p in ENDED for p in phase.values())
    return Decision(start=start, skip=skip, all_ended=all_ended)


@dataclass(frozen=True)
class Ranked:
    """What a strategy may weigh of one task."""

    name: str
    depends_on: tuple[str, ...] = ()
    priority: int = 0
    estimated_cost_usd: float | None = None
    size: int = 0
    """How much the task asks for (its prompt's length): costFirst's guess without an estimate."""


STRATEGIES: tuple[str, ...] = get_args(Strategy)


def inherited_priority(tasks: Sequence[Ranked]) -> dict[str, int]:
    """Each task's priority raised to the highest of every task that waits on it, directly or not:
    a low-priority task that an urgent one depends on is as urgent (no priority inversion)."""
    down = dependents([Node(t.name, t.depends_on) for t in tasks])
    own = {t.name: t.priority for t in tasks}
    memo: dict[str, int] = {}
    for name in topological_order([Node(t.name, t.depends_on) for t in tasks])[::-1]:
        memo[name] = max([own[name], *(memo[d] for d in down[name])])
    return memo


def ranks(tasks: Sequence[Ranked], strategy: str = "criticalPath") -> dict[str, tuple[float, ...]]:
    """The start order of ready tasks under `strategy` (the sort key `decide` takes; lower first).

    criticalPath: the longest chain of tasks still to come first, then higher priority.
    priority: higher (inherited) priority first, then the longer chain.
    fifo: the order of spec.tasks.
    costFirst: the cheapest first (estimatedCostUSD, else the shorter prompt), so a budget
    completes as many tasks as it can; tasks with an estimate before those without.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown scheduling strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    chain = critical_path([Node(t.name, t.depends_on) for t in tasks])
    prio = inherited_priority(tasks)
    out: dict[str, tuple[float, ...]] = {}
    for index, t in enumerate(tasks):
        if strategy == "criticalPath":
            out[t.name] = (-chain[t.name], -prio[t.name])
        elif strategy == "priority":
            out[t.name] = (-prio[t.name], -chain[t.name])
        elif strategy == "fifo":
            out[t.name] = (index,)
        else:
            known = t.estimated_cost_usd is not None
            out[t.name] = (0 if known else 1, t.estimated_cost_usd if known else t.size, -prio[t.name])
    return out
