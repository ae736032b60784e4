"""The task graph: checks, orderings and what may start now."""

from __future__ import annotations

import pytest

from braid.api import TaskSpec
from braid.plan import (
    Node,
    PlanError,
    critical_path,
    decide,
    find_cycle,
    nodes_of,
    topological_order,
    upstream,
    validate,
)
from braid.plan.schedule import Ranked, inherited_priority, ranks


def graph(**deps: str) -> list[Node]:
    """graph(a="", b="a", c="a b") -> a, b depends on a, c depends on a and b."""
    return [Node(name, tuple(d.split())) for name, d in deps.items()]


# -- validate ------------------------------------------------------------------------------------------


def test_valid_graph_passes():
    validate(graph(schema="", models="schema", api="models", cli="", docs=""))


def test_unknown_dependency_names_the_field():
    nodes = graph(a="", b="a", c="a nowhere")
    with pytest.raises(PlanError) as info:
        validate(nodes)
    assert str(info.value) == "spec.tasks[2].dependsOn[1]: task 'c' depends on unknown task 'nowhere'"
    assert info.value.reason == "UnknownDependency"


def test_duplicate_name():
    with pytest.raises(PlanError) as info:
        validate([Node("a"), Node("b"), Node("a")])
    assert "spec.tasks[2].name" in str(info.value) and info.value.reason == "DuplicateTask"


def test_three_cycle_message():
    nodes = graph(a="b", b="c", c="a")
    with pytest.raises(PlanError) as info:
        validate(nodes)
    assert str(info.value) == "spec.tasks: dependency cycle a -> b -> c -> a"
    assert info.value.reason == "DependencyCycle"


def test_cycle_is_reported_from_its_own_nodes_only():
    # x and y lead into the cycle but are not part of it
    nodes = graph(x="y", y="p", p="q", q="r", r="p", z="")
    cycle = find_cycle(nodes)
    assert cycle == ["p", "q", "r", "p"]


def test_two_cycle_and_no_cycle():
    assert find_cycle(graph(a="b", b="a")) == ["a", "b", "a"]
    assert find_cycle(graph(a="", b="a", c="a b")) is None


def test_self_loop_is_a_cycle():
    assert find_cycle([Node("a", ("a",))]) == ["a", "a"]


def test_long_chain_does_not_hit_the_recursion_limit():
    n = 5000
    nodes = [Node(f"t{i}", (f"t{i - 1}",) if i else ()) for i in range(n)]
    validate(nodes)
    nodes[0] = Node("t0", (f"t{n - 1}",))
    cycle = find_cycle(nodes)
    assert cycle is not None and len(cycle) == n + 1 and cycle[0] == cycle[-1]


def test_nodes_of_task_specs():
    tasks = [TaskSpec(name="a", prompt="p"), TaskSpec(name="b", prompt="p", depends_on=["a"])]
    assert nodes_of(tasks) == [Node("a"), Node("b", ("a",))]


# -- orderings -------------------------------------------------------------------------------------------


def test_topological_order_dependencies_first_ties_by_name():
    nodes = graph(zeta="", api="models", models="schema", schema="", alpha="")
    assert topological_order(nodes) == ["alpha", "schema", "models", "api", "zeta"]


def test_topological_order_rejects_a_cycle():
    with pytest.raises(PlanError):
        topological_order(graph(a="b", b="a"))


def test_critical_path_counts_the_longest_chain_to_the_end():
    nodes = graph(schema="", models="schema", api="models", tests="api", cli="", docs="", lint="docs")
    assert critical_path(nodes) == {
        "schema": 4, "models": 3, "api": 2, "tests": 1, "cli": 1, "docs": 2, "lint": 1,
    }


def test_critical_path_takes_the_longest_branch():
    nodes = graph(root="", short="root", long1="root", long2="long1", long3="long2")
    cp = critical_path(nodes)
    assert cp["root"] == 4 and cp["short"] == 1 and cp["long1"] == 3


def test_upstream_is_transitive():
    nodes = graph(a="", b="a", c="b", d="", e="c d")
    assert upstream(nodes, "e") == {"a", "b", "c", "d"}
    assert upstream(nodes, "a") == set()


# -- decide ---------------------------------------------------------------------------------------------


DEMO = graph(schema="", models="schema", api="models", tests="api", cli="", intro="", usage="")


def test_start_longest_critical_path_first():
    decision = decide(DEMO, {}, max_parallel=3)
    # schema heads a chain of 4; the rest are 1 long, ties by name
    assert decision.start == ["schema", "cli", "intro"]
    assert decision.skip == {} and not decision.all_ended


def test_never_more_than_max_parallel_running():
    phases = {"schema": "Running", "cli": "Running"}
    assert decide(DEMO, phases, max_parallel=3).start == ["intro"]
    phases["intro"] = "Running"
    assert decide(DEMO, phases, max_parallel=3).start == []
    # more running than allowed (maxParallel lowered mid-run): start nothing, stop nothing
    assert decide(DEMO, phases, max_parallel=1).start == []


def test_task_starts_as_soon_as_its_own_dependencies_succeeded():
    # cli and intro are still running: no waiting for a "batch" to finish
    phases = {"schema": "Succeeded", "cli": "Running", "intro": "Running"}
    assert decide(DEMO, phases, max_parallel=3).start == ["models"]


def test_a_task_waits_for_all_its_dependencies():
    nodes = graph(a="", b="", c="a b")
    assert decide(nodes, {"a": "Succeeded", "b": "Running"}, 4).start == []
    assert decide(nodes, {"a": "Succeeded", "b": "Succeeded"}, 4).start == ["c"]


def test_ready_tasks_are_ordered_by_critical_path_then_name():
    nodes = graph(b="", a="", c="", d="c", e="d")
    assert decide(nodes, {}, 5).start == ["c", "a", "b"]


def test_an_explicit_rank_overrides_the_critical_path():
    nodes = graph(a="", b="", c="")
    assert decide(nodes, {}, 2, rank={"a": (1,), "b": (1,), "c": (0,)}).start == ["c", "a"]


def ranked(**tasks: tuple[str, int]) -> list[Ranked]:
    """name=(dependencies, priority)."""
    return [Ranked(name, tuple(deps.split()), prio) for name, (deps, prio) in tasks.items()]


def start_order(tasks: list[Ranked], strategy: str) -> list[str]:
    rank = ranks(tasks, strategy)
    return decide([Node(t.name, t.depends_on) for t in tasks], {}, len(tasks), rank=rank).start


def test_critical_path_breaks_ties_by_priority():
    tasks = ranked(a=("", 0), b=("", 5), c=("", 0), d=("c", 0))
    assert start_order(tasks, "criticalPath") == ["c", "b", "a"]


def test_priority_starts_the_highest_priority_first_and_the_chain_breaks_ties():
    tasks = ranked(a=("", 1), b=("", 9), c=("", 1), d=("c", 1))
    assert start_order(tasks, "priority") == ["b", "c", "a"]


def test_a_task_inherits_the_priority_of_the_tasks_waiting_on_it():
    # urgent cannot start before base; base is as urgent as urgent is
    tasks = ranked(other=("", 5), base=("", 0), urgent=("base", 10), leaf=("", -3))
    assert inherited_priority(tasks) == {"other": 5, "base": 10, "urgent": 10, "leaf": -3}
    assert start_order(tasks, "priority") == ["base", "other", "leaf"]


def test_fifo_keeps_the_order_of_spec_tasks():
    tasks = ranked(z=("", 0), m=("", 9), a=("", 0), b=("a", 0))
    assert start_order(tasks, "fifo") == ["z", "m", "a"]


def test_cost_first_starts_the_cheapest_estimate_then_the_shortest_prompt():
    tasks = [Ranked("dear", (), 0, 2.0, 10), Ranked("cheap", (), 0, 0.1, 900), Ranked("short", (), 0, None, 5),
             Ranked("long", (), 0, None, 500)]
    assert start_order(tasks, "costFirst") == ["cheap", "dear", "short", "long"]


def test_an_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="'fastest'"):
        ranks(ranked(a=("", 0)), "fastest")


def test_downstream_of_a_failed_task_is_skipped_transitively():
    phases = {"schema": "Failed", "cli": "Succeeded"}
    decision = decide(DEMO, phases, max_parallel=3)
    assert set(decision.skip) == {"models", "api", "tests"}
    for name in ("models", "api", "tests"):
        assert decision.skip[name].reason == "DependencyFailed"
    assert "schema" in decision.skip["models"].message
    assert "models" in decision.skip["api"].message
    assert decision.start == ["intro", "usage"]
    assert not decision.all_ended


@pytest.mark.parametrize("phase", ["Failed", "Skipped", "Cancelled"])
def test_any_unsuccessful_end_blocks_dependents(phase):
    decision = decide(graph(a="", b="a"), {"a": phase}, 2)
    assert decision.skip["b"].reason == "DependencyFailed"
    assert decision.all_ended


def test_failure_does_not_skip_unrelated_or_already_running_tasks():
    nodes = graph(a="", b="a", c="", d="c")
    decision = decide(nodes, {"a": "Failed", "c": "Running"}, 2)
    assert set(decision.skip) == {"b"}
    assert decision.start == [] and not decision.all_ended


def test_budget_exhausted_skips_pending_tasks():
    phases = {"schema": "Succeeded", "cli": "Running"}
    decision = decide(DEMO, phases, max_parallel=3, budget_exhausted=True)
    assert decision.start == []
    assert set(decision.skip) == {"models", "api", "tests", "intro", "usage"}
    assert all(s.reason == "BudgetExceeded" for s in decision.skip.values())
    assert not decision.all_ended  # cli is still running
    assert decide(DEMO, {**phases, "cli": "Succeeded"}, 3, budget_exhausted=True).all_ended


def test_budget_exhausted_keeps_dependency_failed_reasons():
    decision = decide(graph(a="", b="a", c=""), {"a": "Failed"}, 2, budget_exhausted=True)
    assert decision.skip["b"].reason == "DependencyFailed"
    assert decision.skip["c"].reason == "BudgetExceeded"


def test_suspended_starts_nothing_and_skips_nothing_new():
    decision = decide(DEMO, {}, max_parallel=3, suspended=True)
    assert decision.start == [] and decision.skip == {} and not decision.all_ended


def test_suspended_still_skips_downstream_of_failures():
    decision = decide(graph(a="", b="a"), {"a": "Failed"}, 2, suspended=True)
    assert decision.skip["b"].reason == "DependencyFailed"


def test_all_ended():
    phases = dict.fromkeys([n.name for n in DEMO], "Succeeded")
    assert decide(DEMO, phases, 3).all_ended
    phases["usage"] = "Running"
    assert not decide(DEMO, phases, 3).all_ended


def test_decide_is_deterministic():
    first = decide(DEMO, {"schema": "Succeeded"}, 2)
    for _ in range(5):
        assert decide(list(reversed(DEMO)), {"schema": "Succeeded"}, 2) == first


def test_whole_run_simulated():
    """Drive decide() to the end: the diamond's join waits for both sides; failures skip downstream."""
    nodes = graph(base="", left="base", right="base", join="left right", solo="", after_solo="solo")
    phases: dict[str, str] = {}
    order: list[list[str]] = []
    while True:
        decision = decide(nodes, phases, max_parallel=2)
        for name, _skip in decision.skip.items():
            phases[name] = "Skipped"
        if decision.all_ended:
            break
        for name in decision.start:
            phases[name] = "Running"
        order.append(sorted(decision.start))
        running = sorted(n for n, p in phases.items() if p == "Running")
        assert len(running) <= 2
        # finish the first running task; solo fails
        done = running[0]
        phases[done] = "Failed" if done == "solo" else "Succeeded"
    assert phases == {"base": "Succeeded", "left": "Succeeded", "right": "Succeeded", "join": "Succeeded",
                      "solo": "Failed", "after_solo": "Skipped"}
    assert order[0] == ["base", "solo"]
