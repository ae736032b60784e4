"""What may start now: DAG-driven admission under maxParallel and the budget. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .budget import BUDGET_EXCEEDED
from .dag import Node, critical_path, topological_order

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
    priority: Mapping[str, int] | None = None,
) -> Decision:
    """Decide which pending tasks start and which are skipped.

    A task starts as soon as its own dependencies have succeeded and a slot is free;
    there are no batches. Among ready tasks, the longest remaining critical path goes
    first (ties by name, so the decision is deterministic).
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
        rank = priority if priority is not None else critical_path(nodes)
        ready.sort(key=lambda n: (-rank[n], n))
        start = ready[:slots]

    all_ended = not start and all(p in ENDED for p in phase.values())
    return Decision(start=start, skip=skip, all_ended=all_ended)
