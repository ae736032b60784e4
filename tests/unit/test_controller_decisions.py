"""The operator's pure decisions (braid.controller.decide): what to create, start, stop, retry and report."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from braid.api import (
    AgentTask,
    AgentTaskStatus,
    Conflict,
    ConflictFile,
    MergeStatus,
    ParallelRun,
    Resolution,
    TaskResult,
    Usage,
)
from braid.controller.decide import (
    MergeView,
    PodView,
    RunObservation,
    TaskPolicy,
    Terminated,
    decide_run,
    decide_task,
    parse_merge_report,
)
from braid.controller.queue import Key, WorkQueue
from braid.kube import agent_pod, agent_task
from braid.plan.clock import iso
from braid.settings import Settings

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
POLICY = TaskPolicy(deadline_grace_seconds=30, max_interruptions=2)


def make_run(tasks: list[dict[str, Any]], **spec: Any) -> ParallelRun:
    return ParallelRun.model_validate({
        "apiVersion": "braid.dev/v1alpha1", "kind": "ParallelRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "run-uid", "generation": 1},
        "spec": {"repo": {"url": "https://git.example.com/app.git"}, "tasks": tasks, **spec},
    })


def t(name: str, *deps: str) -> dict[str, Any]:
    return {"name": name, "prompt": f"do {name}", "dependsOn": list(deps)}


def child(run: ParallelRun, name: str, *, suspend: bool = True, status: AgentTaskStatus | None = None,
          **spec: Any) -> AgentTask:
    body = json.loads(json.dumps(agent_task(run, run.spec.task(name))))
    body["metadata"].update(uid=f"uid-{name}", generation=1)
    body["spec"].update(suspend=suspend, **spec)
    if status is not None:
        body["status"] = status.wire()
    return AgentTask.model_validate(body)


def result(phase: str = "Succeeded", *, reason: str | None = None, cost: float = 0.5) -> str:
    return TaskResult(run="r", task="a", phase=phase, branch="braid/r/tasks/a", commit="c" * 40, reason=reason,
                      usage=Usage(input_tokens=100, output_tokens=50, cost_usd=cost)).compact_json()


def pod(attempt: int, *, phase: str = "Pending", message: str | None = None, exit_code: int | None = None,
        reason: str | None = None, deleting: bool = False, created: datetime = NOW,
        container_reason: str | None = None) -> PodView:
    terminated = None
    if exit_code is not None:
        terminated = Terminated(exit_code, container_reason, message)
    return PodView(name=f"r-a-{attempt}", attempt=attempt, phase=phase, reason=reason, created=created,
                   deleting=deleting, terminated=terminated)


def running(attempts: int = 1, *, started: datetime = NOW, **fields: Any) -> AgentTaskStatus:
    return AgentTaskStatus(phase="Running", attempts=attempts, pod=f"r-a-{attempts}", started_at=iso(started),
                           attempt_started_at=iso(started), **fields)


def apply(task: AgentTask, status: AgentTaskStatus) -> AgentTask:
    body = task.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["status"] = status.wire()
    return AgentTask.model_validate(body)


@pytest.fixture
def run() -> ParallelRun:
    return make_run([t("a")], retry={"limit": 2, "backoffSeconds": 30}, taskTimeoutSeconds=600)


# -- AgentTask ---------------------------------------------------------------------------------------


def test_a_held_task_waits_and_an_admitted_one_starts_attempt_one(run: ParallelRun) -> None:
    held = decide_task(child(run, "a"), [], NOW, POLICY)
    assert held.create_attempt is None
    assert (held.status.phase, held.status.reason) == ("Pending", "Waiting")

    plan = decide_task(child(run, "a", suspend=False), [], NOW, POLICY)
    assert plan.create_attempt == 1
    assert (plan.status.phase, plan.status.attempts, plan.status.pod) == ("Running", 1, "r-a-1")
    assert plan.status.attempt_started_at == iso(NOW)
    assert plan.requeue_after == 600 + 30
    assert [e.reason for e in plan.events] == ["Started"]


def test_deciding_again_on_what_was_written_changes_nothing(run: ParallelRun) -> None:
    task = child(run, "a", suspend=False)
    first = decide_task(task, [], NOW, POLICY)
    again = decide_task(apply(task, first.status), [pod(1)], NOW + timedelta(seconds=5), POLICY)
    assert again.create_attempt is None and not again.events and not again.delete_pods
    assert again.status == first.status


def test_success_records_commit_usage_and_ends(run: ParallelRun) -> None:
    task = child(run, "a", suspend=False, status=running())
    plan = decide_task(task, [pod(1, phase="Succeeded", exit_code=0, message=result())], NOW, POLICY)
    assert plan.status.phase == "Succeeded" and plan.ended
    assert plan.status.commit == "c" * 40
    assert plan.status.usage.cost_usd == 0.5
    assert plan.usage == [Usage(input_tokens=100, output_tokens=50, cost_usd=0.5)]
    assert plan.status.finished_at == iso(NOW)
    settled = decide_task(apply(task, plan.status), [pod(1, phase="Succeeded", exit_code=0, message=result())],
                          NOW, POLICY)
    assert settled.usage == [] and settled.status.usage.cost_usd == 0.5


def test_a_retryable_failure_backs_off_exponentially_then_starts_a_new_pod(run: ParallelRun) -> None:
    failed = pod(1, phase="Failed", exit_code=1, message=result("Failed", reason="AgentFailed"))
    plan = decide_task(child(run, "a", suspend=False, status=running()), [failed], NOW, POLICY)
    assert (plan.status.phase, plan.status.failures, plan.status.reason) == ("Pending", 1, "AgentFailed")
    assert plan.status.next_attempt_at == iso(NOW + timedelta(seconds=30))
    assert plan.create_attempt is None and plan.requeue_after == 30
    assert [e.reason for e in plan.events] == ["AttemptFailed"]

    later = decide_task(apply(child(run, "a", suspend=False), plan.status), [failed], NOW + timedelta(seconds=30),
                        POLICY)
    assert later.create_attempt == 2 and later.status.pod == "r-a-2"

    second = pod(2, phase="Failed", exit_code=1, message=result("Failed", reason="AgentFailed"))
    plan2 = decide_task(apply(child(run, "a", suspend=False), later.status), [failed, second], NOW, POLICY)
    assert plan2.status.next_attempt_at == iso(NOW + timedelta(seconds=60))


def test_each_attempt_gets_the_share_less_what_the_task_already_spent(run: ParallelRun) -> None:
    share = {"maxCostUSD": 2.0, "maxTokens": 1000}
    failed = pod(1, phase="Failed", exit_code=1, message=result("Failed", reason="AgentFailed", cost=0.5))
    plan = decide_task(child(run, "a", suspend=False, budget=share, status=running()), [failed], NOW, POLICY)
    later = decide_task(apply(child(run, "a", suspend=False, budget=share), plan.status), [failed],
                        NOW + timedelta(seconds=30), POLICY)
    assert later.create_attempt == 2
    # attempt 1 spent $0.50 and 150 tokens of the task's $2 / 1000-token share
    assert later.attempt_spec is not None and later.attempt_spec.budget is not None
    assert later.attempt_spec.budget.max_cost_usd == pytest.approx(1.5)
    assert later.attempt_spec.budget.max_tokens == 850


def test_a_skip_request_in_the_spec_ends_the_task_skipped_and_stops_its_pod(run: ParallelRun) -> None:
    skip = {"reason": "DependencyFailed", "message": "dependency 'x' Failed"}
    plan = decide_task(child(run, "a", suspend=False, skip=skip, status=running()), [pod(1, phase="Running")],
                       NOW, POLICY)
    assert (plan.status.phase, plan.status.reason, plan.status.message) == ("Skipped", *skip.values())
    assert plan.status.finished_at == iso(NOW) and plan.create_attempt is None
    assert plan.delete_pods == ["r-a-1"]
    assert plan.status.conditions[-1].status == "False"


def test_retries_end_at_the_limit(run: ParallelRun) -> None:
    failed = pod(3, phase="Failed", exit_code=1, message=result("Failed", reason="PushFailed"))
    plan = decide_task(child(run, "a", suspend=False, status=running(3, failures=2)), [failed], NOW, POLICY)
    assert (plan.status.phase, plan.status.failures) == ("Failed", 3)
    assert plan.ended and plan.create_attempt is None


@pytest.mark.parametrize("reason", ["InvalidAPIKey", "BranchExists"])
def test_a_failure_that_would_repeat_is_not_retried(run: ParallelRun, reason: str) -> None:
    failed = pod(1, phase="Failed", exit_code=1, message=result("Failed", reason=reason))
    plan = decide_task(child(run, "a", suspend=False, status=running()), [failed], NOW, POLICY)
    assert (plan.status.phase, plan.status.reason, plan.status.failures) == ("Failed", reason, 1)
    assert plan.ended and plan.create_attempt is None and plan.requeue_after is None


def pod_spec_of(task: AgentTask, plan) -> dict[str, Any]:
    """The AgentTaskSpec the attempt's pod is given, as the runner reads it."""
    attempt = task.model_copy(update={"spec": plan.attempt_spec})
    container = agent_pod(attempt, plan.create_attempt, Settings(runner_image="braid-agent:test"))["spec"][
        "containers"][0]
    return json.loads(next(e["value"] for e in container["env"] if e["name"] == "BRAID_TASK_SPEC"))


def test_each_attempt_carries_the_commit_braid_last_pushed_to_the_task_branch(run: ParallelRun) -> None:
    first = decide_task(child(run, "a", suspend=False), [], NOW, POLICY)
    assert first.attempt_spec is not None and first.attempt_spec.last_pushed is None
    assert "lastPushed" not in pod_spec_of(child(run, "a", suspend=False), first)

    # attempt 1 pushed c*40 and failed: attempt 2 may resume the branch only from there
    failed = pod(1, phase="Failed", exit_code=1, message=result("Failed", reason="AgentFailed"))
    task = child(run, "a", suspend=False, status=running())
    plan = decide_task(task, [failed], NOW, POLICY)
    assert plan.status.commit == "c" * 40
    later = decide_task(apply(task, plan.status), [failed], NOW + timedelta(seconds=30), POLICY)
    assert later.create_attempt == 2
    assert later.attempt_spec.last_pushed == "c" * 40
    assert pod_spec_of(task, later)["lastPushed"] == "c" * 40
    # the AgentTask itself is not changed: the record is the task's status
    assert task.spec.last_pushed is None


def test_each_attempt_carries_the_saved_conversation_and_what_was_spent(run: ParallelRun) -> None:
    """The cluster's next attempt continues the conversation attempt 1 pushed, and counts what it spent."""
    report = TaskResult(run="r", task="a", phase="Failed", branch="braid/r/tasks/a", commit="c" * 40,
                        transcript="d" * 40, reason="AgentFailed",
                        usage=Usage(input_tokens=100, output_tokens=50, cost_usd=0.5)).compact_json()
    failed = pod(1, phase="Failed", exit_code=1, message=report)
    task = child(run, "a", suspend=False, status=running())
    plan = decide_task(task, [failed], NOW, POLICY)
    assert plan.status.transcript == "d" * 40
    later = decide_task(apply(task, plan.status), [failed], NOW + timedelta(seconds=30), POLICY)
    pod_spec = pod_spec_of(task, later)
    assert pod_spec["lastTranscript"] == "d" * 40
    assert pod_spec["spent"]["costUSD"] == pytest.approx(0.5) and pod_spec["spent"]["inputTokens"] == 100

    # attempt 2's pod is lost without a report: attempt 3 continues what attempt 1 pushed
    lost = pod(2, phase="Failed", exit_code=137, container_reason="Error")
    plan2 = decide_task(apply(task, later.status), [failed, lost], NOW + timedelta(seconds=40), POLICY)
    third = decide_task(apply(task, plan2.status), [failed, lost], NOW + timedelta(seconds=200), POLICY)
    assert third.create_attempt == 3
    assert pod_spec_of(task, third)["lastTranscript"] == "d" * 40


def test_an_attempt_without_a_report_leaves_the_record_as_it_was(run: ParallelRun) -> None:
    task = child(run, "a", suspend=False, status=running(2, commit="e" * 40))
    crashed = pod(2, phase="Failed", exit_code=139, container_reason="Error")
    plan = decide_task(task, [pod(1, phase="Failed", exit_code=1), crashed], NOW, POLICY)
    later = decide_task(apply(task, plan.status), [pod(1, phase="Failed", exit_code=1), crashed],
                        NOW + timedelta(seconds=30), POLICY)
    assert later.create_attempt == 3 and later.attempt_spec.last_pushed == "e" * 40


@pytest.mark.parametrize(("exit_code", "container_reason", "reason", "phase"), [
    (137, "OOMKilled", "OOMKilled", "Failed"),
    (139, "Error", "Crashed", "Pending"),
    (0, "Completed", "NoResult", "Failed"),
])
def test_a_pod_without_a_result(run: ParallelRun, exit_code: int, container_reason: str, reason: str,
                                phase: str) -> None:
    crashed = pod(1, phase="Failed", exit_code=exit_code, container_reason=container_reason)
    plan = decide_task(child(run, "a", suspend=False, status=running()), [crashed], NOW, POLICY)
    assert (plan.status.phase, plan.status.reason) == (phase, reason)


def test_eviction_starts_a_new_attempt_at_once_without_counting(run: ParallelRun) -> None:
    evicted = pod(1, phase="Failed", exit_code=137, reason="Evicted")
    plan = decide_task(child(run, "a", suspend=False, status=running()), [evicted], NOW, POLICY)
    assert (plan.status.failures, plan.status.interruptions) == (0, 1)
    assert plan.create_attempt == 2
    assert [e.reason for e in plan.events] == ["Interrupted", "Started"]


def test_a_vanished_pod_is_an_interruption_not_a_running_task(run: ParallelRun) -> None:
    plan = decide_task(child(run, "a", suspend=False, status=running()), [], NOW, POLICY)
    assert plan.status.interruptions == 1
    assert plan.create_attempt == 2 and plan.status.pod == "r-a-2"


def test_too_many_interruptions_fail_the_task(run: ParallelRun) -> None:
    plan = decide_task(child(run, "a", suspend=False, status=running(3, interruptions=2)), [], NOW, POLICY)
    assert (plan.status.phase, plan.status.reason) == ("Failed", "PodVanished")


def test_the_operator_enforces_the_deadline_and_it_wins_over_retries(run: ParallelRun) -> None:
    task = child(run, "a", suspend=False, status=running(started=NOW - timedelta(seconds=600 + 29)))
    assert decide_task(task, [pod(1, phase="Running")], NOW, POLICY).requeue_after == 1
    plan = decide_task(task, [pod(1, phase="Running")], NOW + timedelta(seconds=1), POLICY)
    assert plan.delete_pods == ["r-a-1"]
    assert (plan.status.phase, plan.status.reason) == ("Failed", "Timeout")
    assert plan.create_attempt is None


def test_a_kubelet_deadline_fails_the_task_even_with_retries_left(run: ParallelRun) -> None:
    killed = pod(1, phase="Failed", exit_code=143, reason="DeadlineExceeded", message=result("Cancelled"))
    plan = decide_task(child(run, "a", suspend=False, status=running()), [killed], NOW, POLICY)
    assert (plan.status.phase, plan.status.reason) == ("Failed", "Timeout")
    assert plan.status.usage.cost_usd == 0.5


def test_suspension_stops_the_pod_and_its_late_report_still_counts(run: ParallelRun) -> None:
    task = child(run, "a", suspend=True, status=running())
    plan = decide_task(task, [pod(1, phase="Running")], NOW, POLICY)
    assert plan.delete_pods == ["r-a-1"]
    assert (plan.status.phase, plan.status.reason) == ("Pending", "Suspended")

    stopped = pod(1, phase="Failed", exit_code=143, message=result("Cancelled", cost=0.25), deleting=True)
    later = decide_task(apply(task, plan.status), [stopped], NOW, POLICY)
    assert later.status.usage.cost_usd == 0.25 and later.status.usage_attempts == 1
    assert later.status.phase == "Pending" and later.create_attempt is None

    resumed = decide_task(apply(child(run, "a", suspend=False), later.status), [stopped], NOW, POLICY)
    assert resumed.create_attempt == 2


def test_no_new_attempt_while_an_old_pod_is_still_shutting_down(run: ParallelRun) -> None:
    status = AgentTaskStatus(phase="Pending", attempts=1, reason="Suspended")
    plan = decide_task(child(run, "a", suspend=False, status=status), [pod(1, phase="Running", deleting=True)], NOW,
                       POLICY)
    assert plan.create_attempt is None and plan.requeue_after


def test_a_pod_created_but_not_recorded_is_adopted(run: ParallelRun) -> None:
    status = AgentTaskStatus(phase="Pending", attempts=1, reason="AgentFailed", failures=1)
    plan = decide_task(child(run, "a", suspend=False, status=status),
                       [pod(1, phase="Failed", exit_code=1), pod(2, created=NOW - timedelta(seconds=9))], NOW, POLICY)
    assert plan.create_attempt is None
    assert (plan.status.phase, plan.status.attempts, plan.status.pod) == ("Running", 2, "r-a-2")
    assert plan.status.attempt_started_at == iso(NOW - timedelta(seconds=9))


def test_an_ended_task_stops_a_pod_that_still_runs(run: ParallelRun) -> None:
    status = AgentTaskStatus(phase="Skipped", reason="DependencyFailed")
    plan = decide_task(child(run, "a", status=status), [pod(1, phase="Running")], NOW, POLICY)
    assert plan.delete_pods == ["r-a-1"] and plan.status.phase == "Skipped"


def test_pod_view_reads_the_kubelet_fields() -> None:
    view = PodView.from_manifest({
        "metadata": {"name": "r-a-3", "labels": {"braid.dev/attempt": "3"}, "creationTimestamp": "2026-01-02T03:04:05Z",
                     "deletionTimestamp": "2026-01-02T03:05:00Z"},
        "status": {"phase": "Failed", "reason": "Evicted", "conditions": [{"type": "DisruptionTarget",
                                                                            "status": "True"}],
                   "containerStatuses": [{"name": "runner", "state": {"terminated": {"exitCode": 137,
                                                                                    "message": result()}}}]},
    })
    assert (view.attempt, view.phase, view.reason, view.deleting, view.disrupted) == (3, "Failed", "Evicted", True,
                                                                                      True)
    assert view.created == NOW and view.finished
    assert view.result is not None and view.result.phase == "Succeeded"


# -- ParallelRun -------------------------------------------------------------------------------------

SIX = [t("schema"), t("models", "schema"), t("api", "models"), t("ui", "api"), t("tests", "api", "models"),
       t("docs")]


def observe(run: ParallelRun, children: dict[str, AgentTask] | None = None, merge: MergeView | None = None,
            strays: list[str] | None = None) -> RunObservation:
    return RunObservation(run=run, tasks=children or {}, strays=strays or [], merge=merge or MergeView())


def done(run: ParallelRun, name: str, phase: str = "Succeeded", cost: float = 1.0) -> AgentTask:
    status = AgentTaskStatus(phase=phase, attempts=1, usage=Usage(cost_usd=cost), commit="d" * 40,
                             finished_at=iso(NOW))
    return child(run, name, suspend=False, status=status)


@pytest.fixture
def settings() -> Settings:
    return Settings(runner_image="braid-agent:test")


def test_an_invalid_graph_fails_with_a_condition_and_an_event_and_creates_nothing(settings: Settings) -> None:
    run = make_run([t("a", "b"), t("b", "a")])
    plan = decide_run(observe(run), settings, NOW)
    assert plan.status.phase == "Failed" and plan.status.reason == "DependencyCycle"
    assert not plan.create and not plan.admit
    valid = next(c for c in plan.status.conditions if c.type == "Valid")
    assert (valid.status, valid.reason) == ("False", "DependencyCycle")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "DependencyCycle")]

    again = decide_run(observe(run.model_copy(update={"status": plan.status})), settings, NOW)
    assert not again.events


def test_a_fixed_spec_is_checked_again_and_runs(settings: Settings) -> None:
    broken = make_run([t("a", "b"), t("b", "a")])
    failed = decide_run(observe(broken), settings, NOW).status
    fixed = make_run([t("a"), t("b", "a")]).model_copy(update={"status": failed})
    plan = decide_run(observe(fixed), settings, NOW)
    assert len(plan.create) == 2
    assert plan.status.phase == "Running" and plan.status.reason is None
    assert next(c for c in plan.status.conditions if c.type == "Valid").status == "True"


def test_first_look_creates_every_agenttask_and_admits_the_longest_paths_first(settings: Settings) -> None:
    run = make_run(SIX, maxParallel=2)
    plan = decide_run(observe(run), settings, NOW)
    created = {m["spec"]["task"]: m for m in plan.create}
    assert set(created) == {t["name"] for t in SIX}
    admitted = sorted(n for n, m in created.items() if not m["spec"]["suspend"])
    # schema heads the longest chain; docs wins the second slot on its name over nothing else ready
    assert admitted == ["docs", "schema"]
    assert plan.status.phase == "Running"
    assert plan.status.tasks["models"].reason == "WaitingForDependencies"
    assert {e.reason for e in plan.events} == {"TasksCreated", "TaskStarted"}


def test_a_task_starts_when_its_own_dependencies_succeed_and_a_slot_is_free(settings: Settings) -> None:
    run = make_run(SIX, maxParallel=2)
    children = {n["name"]: child(run, n["name"]) for n in SIX}
    children["schema"] = done(run, "schema")
    children["docs"] = child(run, "docs", suspend=False, status=AgentTaskStatus(phase="Running", attempts=1))
    plan = decide_run(observe(run, children), settings, NOW)
    assert list(plan.admit) == ["r-models"]
    assert plan.admit["r-models"]["spec"]["suspend"] is False
    assert plan.status.tasks["api"].reason == "WaitingForDependencies"
    assert plan.status.progress == "1/6"

    children["docs"] = child(run, "docs", suspend=False, status=AgentTaskStatus(phase="Running", attempts=1))
    children["models"] = child(run, "models", suspend=False, status=AgentTaskStatus(phase="Running", attempts=1))
    full = decide_run(observe(run, children), settings, NOW)
    assert not full.admit


def test_budget_shares_go_with_admission(settings: Settings) -> None:
    run = make_run([t("a"), t("b"), t("c"), t("d")], maxParallel=2, budget={"maxCostUSD": 10})
    children = {n: child(run, n) for n in "abcd"}
    children["a"] = done(run, "a", cost=2.0)
    plan = decide_run(observe(run, children), settings, NOW)
    shares = {name: patch["spec"]["budget"]["maxCostUSD"] for name, patch in plan.admit.items()}
    # 8 USD left over three tasks not yet started: the first takes a third, the next half the rest
    assert shares == {"r-b": pytest.approx(8 / 3), "r-c": pytest.approx((8 - 8 / 3) / 2)}


def test_a_spent_budget_skips_what_has_not_started(settings: Settings) -> None:
    run = make_run([t("a"), t("b")], maxParallel=1, budget={"maxCostUSD": 1})
    children = {"a": done(run, "a", cost=1.5), "b": child(run, "b")}
    plan = decide_run(observe(run, children), settings, NOW)
    # the run states its intent in the child's spec; only the AgentTask reconciler writes its status
    assert plan.skip["r-b"]["spec"]["skip"]["reason"] == "BudgetExceeded"
    assert plan.status.tasks["b"].phase == "Skipped" and plan.status.tasks["b"].reason == "BudgetExceeded"
    assert "BudgetExceeded" in {e.reason for e in plan.events}


def test_dependents_of_a_failed_task_are_skipped_and_the_rest_merge(settings: Settings) -> None:
    run = make_run([t("a"), t("b", "a"), t("c")], maxParallel=3)
    children = {"a": done(run, "a", "Failed"), "b": child(run, "b"), "c": done(run, "c")}
    plan = decide_run(observe(run, children), settings, NOW)
    assert plan.skip["r-b"] == {"spec": {"skip": {"reason": "DependencyFailed", "message": "dependency 'a' Failed"}}}
    assert plan.status.tasks["b"].phase == "Skipped"
    kinds = [m["kind"] for m in plan.create]
    assert kinds == ["ConfigMap", "Job"]
    job = plan.create[1]
    request = json.loads(job["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"])
    assert [x["name"] for x in request["tasks"]] == ["c"]
    assert request["notMerged"] == ["a", "b"]
    assert plan.status.phase == "Merging"
    assert {e.reason for e in plan.events} >= {"TaskSkipped", "MergeStarted"}


def merge_request_of(plan) -> dict[str, Any]:
    job = next(m for m in plan.create if m["kind"] == "Job")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return json.loads(next(e["value"] for e in env if e["name"] == "BRAID_MERGE_REQUEST"))


def test_the_merge_request_carries_the_integration_commit_braid_last_pushed(settings: Settings) -> None:
    run = make_run([t("a")])
    children = {"a": done(run, "a")}
    first = decide_run(observe(run, children), settings, NOW)
    assert "lastPushed" not in merge_request_of(first)

    # the merge Job went away before it reported (deleted, or its pod lost): the next one is
    # given the record the run's status keeps from the merge before
    before = run.model_copy(update={"status": first.status.model_copy(update={
        "merge": MergeStatus(phase="Running", branch="braid/r/merged", last_pushed="f" * 40)})})
    plan = decide_run(observe(before, children), settings, NOW)
    assert merge_request_of(plan)["lastPushed"] == "f" * 40
    assert plan.status.merge.phase == "Running" and plan.status.merge.last_pushed == "f" * 40

    # the Job's report says what it pushed; that is the record from now on
    started = before.model_copy(update={"status": plan.status})
    report = MergeStatus(phase="Succeeded", branch="braid/r/merged", merged=["a"], commit="a" * 40,
                         last_pushed="a" * 40)
    ended = decide_run(observe(started, children, MergeView(exists=True, outcome="Succeeded", report=report)),
                       settings, NOW)
    assert ended.status.merge.last_pushed == "a" * 40
    # a Job that ended without a report leaves the record as it was
    unread = decide_run(observe(started, children, MergeView(exists=True, outcome="Failed")), settings, NOW)
    assert unread.status.merge.phase == "Failed" and unread.status.merge.last_pushed == "f" * 40


def test_the_merge_report_ends_the_run_with_a_warning_per_conflict(settings: Settings) -> None:
    run = make_run([t("a"), t("b")])
    children = {"a": done(run, "a"), "b": done(run, "b")}
    report = MergeStatus(phase="Conflicted", branch="braid/r/merged", merged=["a"], not_merged=["b"],
                         conflicts=[Conflict(task="b", collides_with=["a"],
                                             files=[ConflictFile(path="x.py", kind="content", collides_with=["a"])])],
                         conflict_count=1)
    plan = decide_run(observe(run, children, MergeView(exists=True, outcome="Succeeded", report=report)),
                      settings, NOW)
    assert plan.finished
    assert plan.status.phase == "Conflicted"
    assert plan.status.merge.conflict_count == 1
    assert plan.status.finished_at == iso(NOW)
    warnings = [e for e in plan.events if e.reason == "MergeConflict"]
    assert len(warnings) == 1 and "b" in warnings[0].message and "x.py (content)" in warnings[0].message

    final = run.model_copy(update={"status": plan.status})
    again = decide_run(observe(final, children, MergeView(exists=True, outcome="Succeeded", report=report)),
                       settings, NOW + timedelta(minutes=5))
    assert not again.create and not again.events and not again.finished
    assert again.status == plan.status


@pytest.mark.parametrize(("phases", "merge_phase", "expected"), [
    (("Succeeded", "Succeeded"), "Succeeded", "Succeeded"),
    (("Succeeded", "Failed"), "Succeeded", "Failed"),
    (("Succeeded", "Succeeded"), "Failed", "Failed"),
])
def test_final_phase_rules(settings: Settings, phases: tuple[str, str], merge_phase: str, expected: str) -> None:
    run = make_run([t("a"), t("b")])
    children = {"a": done(run, "a", phases[0]), "b": done(run, "b", phases[1])}
    report = MergeStatus(phase=merge_phase, branch="braid/r/merged")
    plan = decide_run(observe(run, children, MergeView(exists=True, outcome="Succeeded", report=report)),
                      settings, NOW)
    assert plan.status.phase == expected


def test_nothing_to_merge_when_nothing_succeeded(settings: Settings) -> None:
    run = make_run([t("a")])
    plan = decide_run(observe(run, {"a": done(run, "a", "Failed")}), settings, NOW)
    assert not plan.create
    assert plan.status.merge.phase == "Skipped"
    assert plan.status.phase == "Failed" and plan.finished


def test_an_unreadable_report_of_a_finished_job_fails_the_merge(settings: Settings) -> None:
    run = make_run([t("a")])
    plan = decide_run(observe(run, {"a": done(run, "a")}, MergeView(exists=True, outcome="Succeeded")), settings,
                      NOW)
    assert plan.status.merge.phase == "Failed" and plan.status.phase == "Failed"


def test_suspend_stops_admitted_tasks_and_resume_admits_again(settings: Settings) -> None:
    run = make_run([t("a"), t("b"), t("c")], maxParallel=2, suspend=True)
    busy = AgentTaskStatus(phase="Running", attempts=1)
    children = {"a": child(run, "a", suspend=False, status=busy), "b": child(run, "b", suspend=False, status=busy),
                "c": child(run, "c")}
    plan = decide_run(observe(run, children), settings, NOW)
    assert plan.suspend == ["r-a", "r-b"] and not plan.admit
    assert plan.status.phase == "Suspended"
    assert "Suspended" in {e.reason for e in plan.events}
    assert next(c for c in plan.status.conditions if c.type == "Suspended").status == "True"

    stopped = AgentTaskStatus(phase="Pending", attempts=1, reason="Suspended")
    held = {n: child(run, n, status=stopped if n != "c" else None) for n in "abc"}
    resumed = make_run([t("a"), t("b"), t("c")], maxParallel=2).model_copy(update={"status": plan.status})
    plan2 = decide_run(observe(resumed, held), settings, NOW)
    assert sorted(plan2.admit) == ["r-a", "r-b"]
    assert "Resumed" in {e.reason for e in plan2.events}
    assert plan2.status.phase == "Running"


def test_an_edited_task_that_has_not_started_follows_the_spec(settings: Settings) -> None:
    run = make_run([t("a"), t("b", "a")], maxParallel=1)
    old = child(run, "b", prompt="an older prompt")
    plan = decide_run(observe(run, {"a": child(run, "a", suspend=False), "b": old}), settings, NOW)
    assert plan.respec == {"r-b": {**{k: v for k, v in old.spec.wire().items() if k not in ("suspend", "cancel")},
                                   "prompt": "do b"}}


def test_agenttasks_of_removed_tasks_are_deleted(settings: Settings) -> None:
    run = make_run([t("a")])
    plan = decide_run(observe(run, {"a": child(run, "a")}, strays=["r-old"]), settings, NOW)
    assert plan.delete == ["r-old"]


def test_parse_merge_report_takes_a_termination_message_or_the_last_line_of_a_log() -> None:
    report = MergeStatus(phase="Succeeded", branch="b", merged=["a"])
    text = json.dumps(report.wire())
    assert parse_merge_report(text) == report
    assert parse_merge_report(f"INFO merging\nINFO done\n{text}\n") == report
    assert parse_merge_report(text[:50]) is None
    assert parse_merge_report(None) is None


# -- the work queue and the layering -------------------------------------------------------------------


def test_the_work_queue_coalesces_and_requeues_what_changed_while_processing() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        key = Key("AgentTask", "ns", "a")
        queue.add(key)
        queue.add(key)
        assert len(queue) == 1
        got = await queue.get()
        queue.add(key)  # changed while being reconciled: once more afterwards, never in parallel
        assert queue._ready.empty()
        queue.done(got)
        assert await asyncio.wait_for(queue.get(), 1) == key
        queue.done(key)

        queue.add_after(key, 0.05)
        queue.add_after(key, 10)  # a later wake-up does not push back an earlier one
        assert await asyncio.wait_for(queue.get(), 1) == key

    asyncio.run(scenario())


def test_a_cancelled_run_stops_the_pod_then_ends_the_task_cancelled_with_its_pushed_commit(run: ParallelRun) -> None:
    task = child(run, "a", suspend=False, cancel=True, status=running())
    plan = decide_task(task, [pod(1, phase="Running")], NOW, POLICY)
    assert plan.delete_pods == ["r-a-1"] and plan.create_attempt is None
    assert plan.status.phase == "Running" and "cancelled" in plan.status.message
    assert [e.reason for e in plan.events] == ["Cancelling"]

    stopped = pod(1, phase="Failed", exit_code=143, message=result("Cancelled", cost=0.25), deleting=True)
    later = decide_task(apply(task, plan.status), [stopped], NOW, POLICY)
    assert (later.status.phase, later.status.reason) == ("Cancelled", "Cancelled")
    assert later.status.commit == "c" * 40  # what the stopped agent wrote, pushed: braid's record of the branch
    assert later.status.usage.cost_usd == 0.25
    assert later.create_attempt is None and later.status.finished_at == iso(NOW)


def test_a_cancelled_task_that_had_not_started_ends_cancelled_and_one_that_succeeded_stays(run: ParallelRun) -> None:
    waiting = decide_task(child(run, "a", cancel=True), [], NOW, POLICY)
    assert (waiting.status.phase, waiting.status.reason) == ("Cancelled", "Cancelled")
    assert waiting.create_attempt is None
    done = pod(1, phase="Succeeded", exit_code=0, message=result())
    finished = decide_task(child(run, "a", suspend=False, cancel=True, status=running()), [done], NOW, POLICY)
    assert finished.status.phase == "Succeeded" and not finished.delete_pods


def test_spec_cancel_stops_every_task_not_ended_and_the_run_ends_cancelled(settings: Settings) -> None:
    run = make_run([t("a"), t("b"), t("c", "b")], maxParallel=1, cancel=True)
    children = {"a": done(run, "a"), "b": child(run, "b", suspend=False, status=running()), "c": child(run, "c")}
    plan = decide_run(observe(run, children), settings, NOW)
    assert plan.cancel == ["r-b", "r-c"] and not plan.admit and not plan.create
    assert plan.status.phase == "Running"

    ended = {**children, "b": done(run, "b", "Cancelled"), "c": done(run, "c", "Cancelled")}
    final = decide_run(observe(run, ended), settings, NOW)
    assert (final.status.phase, final.status.reason) == ("Cancelled", "Cancelled") and final.finished
    assert not final.cancel


def test_a_resolving_merge_creates_the_resolver_agenttask_then_the_next_rounds_job(settings: Settings) -> None:
    run = make_run([t("a"), t("b")], merge={"resolve": [{"strategy": "agent"}]})
    children = {"a": done(run, "a"), "b": done(run, "b")}
    handed = Resolution(task="b", resolver="b.resolve", branch="braid/r/resolve/b", prepared="f" * 40,
                        files=["x.py"], collides_with=["a"])
    report = MergeStatus(phase="Resolving", branch="braid/r/merged", merged=["a"], not_merged=["b"],
                         resolutions=[handed])
    plan = decide_run(observe(run, children, MergeView(exists=True, outcome="Succeeded", report=report)),
                      settings, NOW)
    (created,) = plan.create
    assert created["kind"] == "AgentTask" and created["metadata"]["name"] == "r-b.resolve"
    assert created["metadata"]["labels"]["braid.dev/task"] == "b.resolve"
    spec = AgentTask.model_validate(created).spec
    assert (spec.resolves, spec.branch, spec.last_pushed, spec.suspend) == ("b", "braid/r/resolve/b", "f" * 40, False)
    assert not plan.finished and plan.status.phase == "Merging"

    # the resolver succeeded: the second round's Job merges with its commit
    resolver = AgentTask.model_validate(created)
    resolver.status = AgentTaskStatus(phase="Succeeded", attempts=1, commit="e" * 40)
    resolving = run.model_copy(update={"status": plan.status})
    obs = RunObservation(run=resolving, tasks=children, resolvers={"b": resolver},
                         merge=MergeView(exists=True, outcome="Succeeded", report=report))
    nxt = decide_run(obs, settings, NOW)
    job = next(m for m in nxt.create if m["kind"] == "Job")
    assert job["metadata"]["name"] == "r-merge-2"
    assert any(m["kind"] == "ConfigMap" and m["metadata"]["name"] == "r-merge-2-report" for m in nxt.create)
    request = merge_request_of(nxt)
    assert request["round"] == 2 and request["resolutions"][0]["commit"] == "e" * 40
    assert nxt.status.merge.round == 2 and nxt.status.resolvers["b"].phase == "Succeeded"
