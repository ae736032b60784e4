"""plan.step with resolver tasks (spec.merge.resolve strategy agent): start them, pay them, merge again."""

from __future__ import annotations

from braid.api import AgentTaskStatus, Budget, MergeStatus, ParallelRunStatus, Resolution, Usage
from braid.plan import TaskView, step
from braid.plan.resolve import resolver_spec
from test_step import NOW, ended, make_run, running

TASKS = [{"name": "a", "prompt": "Add a greeting."}, {"name": "b", "prompt": "Add a farewell."}]
PREPARED = "f" * 40


def resolving(round_: int = 1) -> MergeStatus:
    handed = Resolution(task="b", resolver="b.resolve", branch="braid/r/resolve/b", prepared=PREPARED,
                        files=["app.py"], collides_with=["a"], rule=0, round=round_)
    return MergeStatus(phase="Resolving", branch="braid/r/merged", merged=["a"], not_merged=["b"], round=round_,
                       resolutions=[handed])


def a_run(**spec):
    run = make_run(TASKS, merge={"resolve": [{"strategy": "agent", "prompt": "Keep both."}]}, **spec)
    run.status = ParallelRunStatus(merge=MergeStatus(phase="Running", branch="braid/r/merged"))
    return run


def done() -> dict[str, TaskView]:
    return {"a": ended(), "b": ended()}


def test_a_resolving_merge_starts_the_resolver_with_its_prompt_branch_and_budget_share() -> None:
    out = step(a_run(budget={"maxCostUSD": 10}), done(), resolving(), NOW)
    (start,) = out.resolve
    spec = start.spec
    assert start.task == "b" and spec.task == "b.resolve" and spec.resolves == "b"
    assert spec.branch == "braid/r/resolve/b" and spec.last_pushed == PREPARED and spec.dependency_branches == []
    assert "Add a greeting." in spec.prompt and "Add a farewell." in spec.prompt and "- app.py" in spec.prompt
    assert spec.prompt.rstrip().endswith("Keep both.")
    assert spec.budget == Budget(max_cost_usd=10)
    assert out.merge is None and not out.finished
    assert out.status.phase == "Merging" and out.status.merge.phase == "Resolving"
    assert out.status.resolvers["b"].reason == "Starting"
    assert [e.reason for e in out.events if "resolve" in e.message] == ["ResolverStarted"]


def test_while_the_resolver_runs_nothing_starts_and_once_it_succeeded_the_next_round_merges_its_commit() -> None:
    run = a_run()
    waiting = step(run, done(), resolving(), NOW, resolvers={"b": running()})
    assert waiting.resolve == [] and waiting.merge is None
    fixed = AgentTaskStatus(phase="Succeeded", attempts=1, commit="e" * 40, usage=Usage(cost_usd=0.5))
    out = step(run, done(), resolving(), NOW, resolvers={"b": TaskView(status=fixed)})
    request = out.merge
    assert request is not None and request.round == 2
    assert [(r.task, r.commit, r.prepared) for r in request.resolutions] == [("b", "e" * 40, PREPARED)]
    assert request.resolution_records == {"b": "e" * 40}
    assert out.status.merge.phase == "Running" and out.status.merge.round == 2
    assert out.status.usage.cost_usd == 0.5  # the resolver is paid for in the run's usage


def test_a_failed_resolver_is_merged_again_without_a_result_and_says_why() -> None:
    failed = AgentTaskStatus(phase="Failed", attempts=3, reason="AgentFailed", message="gave up")
    run = a_run()
    run.status.merge = resolving()
    out = step(run, done(), resolving(), NOW, resolvers={"b": TaskView(status=failed)})
    (r,) = out.merge.resolutions
    assert r.commit is None and r.message == "Failed: AgentFailed gave up"
    assert [(e.reason, e.message) for e in out.events if "resolve" in e.message] == [
        ("TaskFailed", "task b.resolve failed: AgentFailed: gave up")]


def test_a_spent_budget_starts_no_resolver_and_the_merge_goes_on_without_one() -> None:
    tasks = {"a": ended(cost=5.0), "b": ended(cost=5.0)}
    out = step(a_run(budget={"maxCostUSD": 10}), tasks, resolving(), NOW)
    assert out.resolve == []
    (r,) = out.merge.resolutions
    assert r.commit is None and r.message == "the budget is spent"


def test_the_round_the_status_names_is_merged_again_when_its_job_is_missing() -> None:
    run = a_run()
    handed = resolving().resolutions[0].model_copy(update={"commit": "e" * 40})
    run.status = ParallelRunStatus(merge=MergeStatus(phase="Running", round=2, resolutions=[handed]))
    out = step(run, done(), None, NOW)
    assert out.merge.round == 2 and out.merge.resolutions == [handed]


def test_a_cancelled_run_stops_its_resolver_and_ends_once_it_has() -> None:
    run = a_run()
    out = step(run, done(), resolving(), NOW, cancelled=True, resolvers={"b": running()})
    assert out.cancel == ["b.resolve"] and not out.finished and out.merge is None
    stopped = AgentTaskStatus(phase="Cancelled", attempts=1)
    out = step(run, done(), resolving(), NOW, cancelled=True, resolvers={"b": TaskView(status=stopped)})
    assert out.finished and out.status.phase == "Cancelled"


def test_the_resolver_spec_uses_the_rules_agent_over_the_tasks() -> None:
    run = make_run(TASKS, agent={"backend": "command", "command": ["my-agent"]},
                   merge={"resolve": [{"paths": ["*.py"], "strategy": "agent", "agent": {"model": "claude-opus-4-1"}}]})
    spec = resolver_spec(run, resolving().resolutions[0])
    assert spec.agent.backend == "command" and spec.agent.command == ["my-agent"]
    assert spec.agent.model == "claude-opus-4-1"
