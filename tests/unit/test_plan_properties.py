"""Properties of the planner over generated task graphs (possibly cyclic)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from braid.plan import ENDED, Node, PlanError, critical_path, decide, find_cycle, topological_order, validate

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)


@st.composite
def graphs(draw, max_tasks: int = 12) -> list[Node]:
    names = draw(st.lists(NAMES, min_size=1, max_size=max_tasks, unique=True))
    nodes = []
    for name in names:
        # duplicates allowed: the API accepts `dependsOn: [a, a]`
        deps = draw(st.lists(st.sampled_from(names), max_size=min(4, len(names))))
        nodes.append(Node(name, tuple(deps)))
    return nodes


@st.composite
def dags(draw, max_tasks: int = 12) -> list[Node]:
    """Acyclic by construction: a task only depends on tasks drawn before it."""
    names = draw(st.lists(NAMES, min_size=1, max_size=max_tasks, unique=True))
    nodes = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), max_size=3, unique=True)) if i else []
        nodes.append(Node(name, tuple(deps)))
    return draw(st.permutations(nodes))


def edges(nodes: list[Node]) -> set[tuple[str, str]]:
    return {(n.name, d) for n in nodes for d in n.depends_on}


def reaches(nodes: list[Node], start: str, goal: str) -> bool:
    graph = {n.name: n.depends_on for n in nodes}
    seen, stack = set(), [start]
    while stack:
        for dep in graph[stack.pop()]:
            if dep == goal:
                return True
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return False


def simulate(nodes: list[Node], max_parallel: int, data) -> dict[str, str]:
    """Run decide() to the end with random completion order and random failures; check the invariants."""
    phases: dict[str, str] = {}
    deps = {n.name: n.depends_on for n in nodes}
    failed: set[str] = set()
    for _ in range(4 * len(nodes) + 4):
        decision = decide(nodes, phases, max_parallel)
        assert not set(decision.start) & set(decision.skip)
        for name, skip in decision.skip.items():
            assert phases.get(name, "Pending") == "Pending"
            assert skip.reason == "DependencyFailed"
            phases[name] = "Skipped"
        for name in decision.start:
            assert phases.get(name, "Pending") == "Pending"
            assert all(phases.get(d) == "Succeeded" for d in deps[name]), f"{name} started before its dependencies"
            phases[name] = "Running"
        running = sorted(n for n, p in phases.items() if p == "Running")
        assert len(running) <= max_parallel
        if decision.all_ended:
            assert not running
            break
        # progress: something is running or something was just decided
        assert running, f"stuck: nothing runs and not all ended ({phases})"
        done = data.draw(st.sampled_from(running), label="completes")
        if data.draw(st.booleans(), label=f"{done} fails"):
            phases[done] = "Failed"
            failed.add(done)
        else:
            phases[done] = "Succeeded"
    else:
        raise AssertionError(f"the run did not end: {phases}")
    return phases


@settings(max_examples=150, deadline=None, database=None)
@given(graphs(), st.integers(min_value=1, max_value=3), st.data())
def test_any_graph_is_rejected_with_a_real_cycle_or_schedulable(nodes, max_parallel, data):
    known = edges(nodes)
    try:
        validate(nodes)
    except PlanError as exc:
        assert exc.reason == "DependencyCycle"
        cycle = find_cycle(nodes)
        assert cycle is not None and len(cycle) >= 2
        assert cycle[0] == cycle[-1]
        assert len(set(cycle[:-1])) == len(cycle) - 1, "a cycle visits each task once"
        for a, b in zip(cycle, cycle[1:], strict=False):
            assert (a, b) in known, f"{a} -> {b} is not an edge"
        assert str(exc) == f"spec.tasks: dependency cycle {' -> '.join(cycle)}"
        return
    assert find_cycle(nodes) is None
    # acyclic: no task reaches itself
    assert not any(reaches(nodes, n.name, n.name) for n in nodes)
    order = topological_order(nodes)
    assert sorted(order) == sorted(n.name for n in nodes)
    position = {name: i for i, name in enumerate(order)}
    for a, b in known:
        assert position[b] < position[a]
    phases = simulate(nodes, max_parallel, data)
    assert set(phases) == {n.name for n in nodes} and all(p in ENDED for p in phases.values())


@settings(max_examples=100, deadline=None, database=None)
@given(graphs())
def test_graph_without_cycle_is_always_accepted(nodes):
    has_cycle = any(reaches(nodes, n.name, n.name) for n in nodes)
    try:
        validate(nodes)
        accepted = True
    except PlanError:
        accepted = False
    assert accepted == (not has_cycle)


@settings(max_examples=150, deadline=None, database=None)
@given(dags(), st.integers(min_value=1, max_value=4), st.data())
def test_every_schedule_respects_dependencies_and_slots(nodes, max_parallel, data):
    validate(nodes)
    phases = simulate(nodes, max_parallel, data)
    assert set(phases) == {n.name for n in nodes}, "every task ends"
    assert all(p in ENDED for p in phases.values())
    failed = {n for n, p in phases.items() if p == "Failed"}
    for node in nodes:
        downstream_of_failure = any(reaches(nodes, node.name, f) for f in failed)
        if downstream_of_failure:
            assert phases[node.name] == "Skipped", f"{node.name} depends on a failed task"
        elif phases[node.name] == "Skipped":
            raise AssertionError(f"{node.name} was skipped without a failed dependency")


@settings(max_examples=100, deadline=None, database=None)
@given(dags(), st.integers(min_value=1, max_value=4))
def test_start_prefers_longest_critical_path(nodes, max_parallel):
    decision = decide(nodes, {}, max_parallel)
    roots = [n.name for n in nodes if not n.depends_on]
    cp = critical_path(nodes)
    assert len(decision.start) == min(max_parallel, len(roots))
    assert decision.start == sorted(roots, key=lambda n: (-cp[n], n))[:max_parallel]


@settings(max_examples=100, deadline=None, database=None)
@given(dags())
def test_critical_path_is_one_more_than_the_longest_dependent(nodes):
    cp = critical_path(nodes)
    for node in nodes:
        dependents = [n.name for n in nodes if node.name in n.depends_on]
        assert cp[node.name] == 1 + max((cp[d] for d in dependents), default=0)
