"""Checks and orderings of the task graph. Pure: no I/O, no clocks."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class PlanError(ValueError):
    """The task graph can never run: the message names the field and the problem."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Node:
    name: str
    depends_on: tuple[str, ...] = ()


def nodes_of(tasks: Iterable[object]) -> list[Node]:
    """Nodes from anything with `name` and `depends_on` (TaskSpec, AgentTaskSpec, test doubles)."""
    return [Node(t.name, tuple(t.depends_on)) for t in tasks]  # type: ignore[attr-defined]


def validate(nodes: Sequence[Node]) -> None:
    """Raise PlanError for duplicate names, unknown dependencies or a cycle (the cycle is named)."""
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name in index:
            raise PlanError(f"spec.tasks[{i}].name: duplicate task name {node.name!r}", "DuplicateTask")
        index[node.name] = i
    for i, node in enumerate(nodes):
        for j, dep in enumerate(node.depends_on):
            if dep not in index:
                raise PlanError(
                    f"spec.tasks[{i}].dependsOn[{j}]: task {node.name!r} depends on unknown task {dep!r}",
                    "UnknownDependency",
                )
    cycle = find_cycle(nodes)
    if cycle:
        raise PlanError(f"spec.tasks: dependency cycle {' -> '.join(cycle)}", "DependencyCycle")


def find_cycle(nodes: Sequence[Node]) -> list[str] | None:
    """A cycle as [a, b, c, a], where x -> y means x depends on y; None when there is none."""
    graph = {n.name: n.depends_on for n in nodes}
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for root in sorted(graph):
        if color[root] != white:
            continue
        # iterative DFS keeping the path, so deep graphs do not hit the recursion limit
        path: list[str] = [root]
        iters = [iter(sorted(graph[root]))]
        color[root] = grey
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                color[path.pop()] = black
                iters.pop()
                continue
            if nxt not in graph:
                continue
            if color[nxt] == grey:
                start = path.index(nxt)
                return path[start:] + [nxt]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def dependents(nodes: Sequence[Node]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for dep in n.depends_on:
            out[dep].append(n.name)
    return out


def critical_path(nodes: Sequence[Node]) -> dict[str, int]:
    """For each task, the number of tasks on the longest chain from it to the end (itself included)."""
    down = dependents(nodes)
    memo: dict[str, int] = {}
    for name in topological_order(nodes)[::-1]:
        memo[name] = 1 + max((memo[d] for d in down[name]), default=0)
    return memo


def topological_order(nodes: Sequence[Node]) -> list[str]:
    """Dependencies before dependents; ties broken by task name. The graph must be valid."""
    waiting = {n.name: len(set(n.depends_on)) for n in nodes}
    down = dependents(nodes)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for d in sorted(set(down[name])):
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, d)
    if len(order) != len(nodes):
        raise PlanError("spec.tasks: dependency cycle", "DependencyCycle")
    return order


def upstream(nodes: Sequence[Node], name: str) -> set[str]:
    """Every task `name` depends on, directly or not."""
    graph = {n.name: n.depends_on for n in nodes}
    seen: set[str] = set()
    stack = list(graph[name])
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(graph.get(dep, ()))
    return seen
