"""plan.step: the one decision both launchers act on, table by table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from braid.api import (
    AgentTaskStatus,
    Budget,
    Conflict,
    ConflictFile,
    MergeStatus,
    ParallelRun,
    ParallelRunStatus,
    Usage,
)
from braid.plan import TaskView, step
from braid.plan.clock import iso

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
# a -> b -> c is the longest chain; d and e stand alone
TASKS = [
    {"name": "a", "prompt": "p"}, {"name": "b", "prompt": "p", "dependsOn": ["a"]},
    {"name": "c", "prompt": "p", "dependsOn": ["b"]}, {"name": "d", "prompt": "p"}, {"name": "e", "prompt": "p"},
]


def make_run(tasks: list[dict[str, Any]] | None = None, **spec: Any) -> ParallelRun:
    return ParallelRun.model_validate({
        "apiVersion": "braid.dev/v1alpha1", "kind": "ParallelRun", "metadata": {"name": "r", "generation": 1},
        "spec": {"repo": {"url": "https://git.example.com/app.git"}, "tasks": tasks or TASKS, **spec},
    })


def ended(phase: str = "Succeeded", cost: float = 0.0, reason: str | None = None) -> TaskView:
    return TaskView(status=AgentTaskStatus(phase=phase, attempts=1, reason=reason, commit="c" * 40,
                                           usage=Usage(cost_usd=cost), finished_at=iso(NOW)))


def pending() -> TaskView:
    return TaskView(status=AgentTaskStatus())


def running(share: float | None = None) -> TaskView:
    budget = Budget(max_cost_usd=share) if share is not None else None
    return TaskView(status=AgentTaskStatus(phase="Running", attempts=1), admitted=True, share=budget)


def all_succeeded() -> dict[str, TaskView]:
    return {t["name"]: ended() for t in TASKS}


@dataclass
class Case:
    name: str
    tasks: dict[str, TaskView]
    spec: dict[str, Any] = field(default_factory=dict)
    merge: MergeStatus | None = None
    cancelled: bool = False
    tasks_spec: list[dict[str, Any]] | None = None
    # what both launchers must do
    start: list[str] = field(default_factory=list)
    skip: dict[str, str] = field(default_factory=dict)
    merge_tasks: list[str] | None = None
    phase: str = "Running"
    reason: str | None = None
    finished: bool = False


CONFLICTED = MergeStatus(phase="Conflicted", branch="braid/r/merged", merged=["a", "b", "c", "d"],
                         not_merged=["e"], conflicts=[Conflict(task="e", collides_with=["d"],
                                                               files=[ConflictFile(path="x", kind="content")])])
PRIORITIES = [{**t, "priority": p} for t, p in zip(TASKS, (0, 0, 0, 3, 7), strict=True)]
CASES = [
    Case("strategy priority starts the highest priority first",
         {t["name"]: pending() for t in TASKS}, {"maxParallel": 2, "scheduling": {"strategy": "priority"}},
         start=["e", "d"], tasks_spec=PRIORITIES),
    Case("strategy criticalPath (the default) weighs priority only between equal chains",
         {t["name"]: pending() for t in TASKS}, {"maxParallel": 2}, start=["a", "e"], tasks_spec=PRIORITIES),
    Case("strategy fifo starts in the order of spec.tasks",
         {t["name"]: pending() for t in TASKS}, {"maxParallel": 2, "scheduling": {"strategy": "fifo"}},
         start=["e", "d"], tasks_spec=list(reversed(TASKS))),
    Case("first look starts the longest chain first, up to maxParallel",
         {t["name"]: pending() for t in TASKS}, {"maxParallel": 2}, start=["a", "d"]),
    Case("a task starts when its own dependency succeeded, not a batch later",
         {"a": ended(), "b": pending(), "c": pending(), "d": running(), "e": pending()}, {"maxParallel": 3},
         start=["b", "e"]),
    Case("dependents of a failure are skipped, the rest goes on",
         {"a": ended("Failed", reason="AgentFailed"), "b": pending(), "c": pending(), "d": running(),
          "e": pending()}, {"maxParallel": 2},
         start=["e"], skip={"b": "DependencyFailed", "c": "DependencyFailed"}),
    Case("a spent budget skips what has not started",
         {"a": ended(cost=2.0), "b": pending(), "c": pending(), "d": pending(), "e": pending()},
         {"budget": {"maxCostUSD": 1.5}},
         skip={n: "BudgetExceeded" for n in "bcde"}, merge_tasks=["a"], phase="Merging"),
    Case("no slot free: nothing starts", {"a": running(), "b": pending(), "c": pending(), "d": running(),
                                          "e": pending()}, {"maxParallel": 2}),
    Case("suspended: nothing starts", {t["name"]: pending() for t in TASKS}, {"suspend": True},
         phase="Suspended", reason="Suspended"),
    Case("every task ended: merge the succeeded ones", {**all_succeeded(), "e": ended("Failed")},
         merge_tasks=["a", "b", "c", "d"], phase="Merging"),
    Case("the merge runs", all_succeeded(), merge=MergeStatus(phase="Running"), phase="Merging"),
    Case("a clean merge succeeds the run", all_succeeded(),
         merge=MergeStatus(phase="Succeeded", branch="braid/r/merged", merged=["a", "b", "c", "d", "e"]),
         phase="Succeeded", reason="Merged", finished=True),
    Case("a conflicted merge", all_succeeded(), merge=CONFLICTED, phase="Conflicted", reason="MergeConflicts",
         finished=True),
    Case("a failed task fails the run after the merge", {**all_succeeded(), "e": ended("Failed")},
         merge=MergeStatus(phase="Succeeded", merged=["a", "b", "c", "d"], not_merged=["e"]),
         phase="Failed", reason="TasksFailed", finished=True),
    Case("nothing succeeded: nothing to merge", {t["name"]: ended("Failed") for t in TASKS},
         phase="Failed", reason="TasksFailed", finished=True),
    Case("a failed merge fails the run", all_succeeded(), merge=MergeStatus(phase="Failed", message="boom"),
         phase="Failed", reason="MergeFailed", finished=True),
    Case("cancelled: nothing starts or merges", {**all_succeeded(), "e": ended("Cancelled")}, cancelled=True,
         phase="Cancelled", reason="Cancelled", finished=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_step(case: Case) -> None:
    decided = step(make_run(case.tasks_spec, **case.spec), case.tasks, case.merge, NOW, cancelled=case.cancelled)
    assert [s.task for s in decided.start] == case.start
    assert {n: s.reason for n, s in decided.skip.items()} == case.skip
    assert (decided.merge and [t.name for t in decided.merge.tasks]) == case.merge_tasks
    status = decided.status
    assert (status.phase, status.reason) == (case.phase, case.reason)
    assert decided.finished == case.finished
    assert (status.finished_at is not None) == case.finished
    succeeded = next(c for c in status.conditions if c.type == "Succeeded")
    expected = {"Succeeded": "True", "Running": "Unknown", "Merging": "Unknown", "Suspended": "Unknown"}
    assert succeeded.status == expected.get(case.phase, "False")
    assert status.counts.total == len(case.tasks)
    for name, reason in case.skip.items():
        assert (status.tasks[name].phase, status.tasks[name].reason) == ("Skipped", reason)


def test_shares_split_what_is_left_and_a_retry_gets_its_share_less_what_it_spent() -> None:
    run = make_run([{"name": n, "prompt": "p"} for n in "abc"], budget={"maxCostUSD": 9})
    first = step(run, {n: pending() for n in "abc"}, None, NOW)
    assert [(s.task, s.budget.max_cost_usd) for s in first.start] == [("a", 3.0), ("b", 3.0), ("c", 3.0)]

    waiting = TaskView(status=AgentTaskStatus(attempts=1, failures=1, usage=Usage(cost_usd=1.25),
                                              next_attempt_at=iso(NOW + timedelta(seconds=30))),
                       admitted=True, share=Budget(max_cost_usd=3.0))
    again = step(run, {"a": waiting, "b": running(3.0), "c": running(3.0)}, None, NOW)
    assert again.start == [] and len(again.retry) == 1
    retry = again.retry[0]
    assert (retry.task, retry.at, retry.budget.max_cost_usd) == ("a", NOW + timedelta(seconds=30), 1.75)
    # backing off holds its slot: the run is running, not pending
    assert again.status.phase == "Running"


def test_an_invalid_graph_fails_and_starts_nothing() -> None:
    run = make_run([{"name": "a", "prompt": "p", "dependsOn": ["b"]}, {"name": "b", "prompt": "p",
                                                                       "dependsOn": ["a"]}])
    decided = step(run, {}, None, NOW)
    assert decided.closed and decided.start == []
    assert (decided.status.phase, decided.status.reason) == ("Failed", "DependencyCycle")
    assert [e.reason for e in decided.events] == ["DependencyCycle"]


def test_a_finished_run_stays_as_it_ended() -> None:
    run = make_run()
    done = step(run, all_succeeded(), MergeStatus(phase="Succeeded", merged=[t["name"] for t in TASKS]), NOW)
    run.status = done.status
    later = step(run, all_succeeded(), MergeStatus(phase="Succeeded"), NOW + timedelta(hours=1))
    assert later.closed and not later.finished and later.events == []
    assert later.status.finished_at == done.status.finished_at and later.status.phase == "Succeeded"


RECORD = "f" * 40


def with_record(run: ParallelRun, phase: str = "Pending") -> ParallelRun:
    """A run whose status remembers the integration commit braid last pushed."""
    return run.model_copy(update={"status": ParallelRunStatus(
        merge=MergeStatus(phase=phase, branch="braid/r/merged", last_pushed=RECORD))})


def test_the_merge_request_carries_the_integration_commit_braid_last_pushed() -> None:
    fresh = step(make_run(), all_succeeded(), None, NOW)
    assert fresh.merge is not None and fresh.merge.last_pushed is None

    decided = step(with_record(make_run()), all_succeeded(), None, NOW)
    assert decided.merge is not None and decided.merge.last_pushed == RECORD
    # while it runs, the status keeps the record (a merge started again gets it too)
    assert (decided.status.merge.phase, decided.status.merge.last_pushed) == ("Running", RECORD)


@pytest.mark.parametrize(("report", "kept"), [
    (MergeStatus(phase="Succeeded", merged=["a"], commit="a" * 40, last_pushed="a" * 40), "a" * 40),
    (MergeStatus(phase="Failed", message="the merge Job failed"), RECORD),
])
def test_the_record_is_what_the_merge_reports_or_else_what_it_was(report: MergeStatus, kept: str) -> None:
    decided = step(with_record(make_run(), "Running"), all_succeeded(), report, NOW)
    assert decided.finished and decided.status.merge.last_pushed == kept


def test_a_run_with_nothing_to_merge_keeps_the_record() -> None:
    decided = step(with_record(make_run()), {t["name"]: ended("Failed") for t in TASKS}, None, NOW)
    assert decided.status.merge.phase == "Skipped" and decided.status.merge.last_pushed == RECORD


def test_a_task_branch_that_cannot_be_merged_at_all_is_said_so() -> None:
    report = MergeStatus(phase="Conflicted", branch="braid/r/merged", merged=["a", "b", "c", "d"], not_merged=["e"],
                         conflicts=[Conflict(task="e", reason="UnrelatedHistory",
                                             message="branch braid/r/tasks/e has no history in common with the base")])
    decided = step(make_run(), all_succeeded(), report, NOW)
    assert (decided.status.phase, decided.status.reason) == ("Conflicted", "MergeConflicts")
    assert decided.status.message == "e not merged (UnrelatedHistory); 4 merged into braid/r/merged"
    (warning,) = [e for e in decided.events if e.reason == "MergeConflict"]
    assert warning.message == ("task e was not merged (UnrelatedHistory): branch braid/r/tasks/e has no history in "
                               "common with the base")


def _verified(phase: str, culprits: list[str], excluded: list[str], merged: list[str]) -> MergeStatus:
    from braid.api import Culprit, Verification, VerifiedPrefix

    found = [Culprit(task=c, last_passed=VerifiedPrefix(tasks=["a"], commit="1" * 40),
                     first_failed=VerifiedPrefix(tasks=["a", c], commit="2" * 40),
                     excluded=[e for e in excluded if e == c or e == "c"]) for c in culprits]
    return MergeStatus(phase="Succeeded", branch="braid/r/merged", merged=merged,
                       not_merged=excluded, commit="3" * 40,
                       verification=Verification(phase=phase, exit_code=0 if phase == "Passed" else 1,
                                                 culprits=found, excluded=excluded))


def test_the_merge_request_carries_verify_and_its_policy() -> None:
    run = make_run(merge={"verify": {"command": ["make", "test"], "timeoutSeconds": 30}, "onVerifyFailure": "exclude"})
    out = step(run, all_succeeded(), None, NOW)
    assert out.merge is not None
    assert out.merge.verify is not None and out.merge.verify.command == ["make", "test"]
    assert out.merge.verify.timeout_seconds == 30
    assert out.merge.on_verify_failure == "exclude"


def test_a_failed_verification_fails_the_run_naming_the_culprit() -> None:
    run = make_run(merge={"verify": {"command": ["make", "test"]}})
    out = step(run, all_succeeded(), _verified("Failed", ["b"], [], ["a", "b", "c", "d", "e"]), NOW)
    assert out.finished
    assert out.status.phase == "Failed"
    assert out.status.reason == "VerificationFailed"
    assert "b" in (out.status.message or "") and "pushed as built" in (out.status.message or "")
    [event] = [e for e in out.events if e.reason == "VerificationFailed" and "from task b" in e.message]
    assert event.type == "Warning" and "2222222222" in event.message


def test_excluded_tasks_show_as_not_merged_with_reason_verification_failed() -> None:
    run = make_run(merge={"verify": {"command": ["make", "test"]}, "onVerifyFailure": "exclude"})
    out = step(run, all_succeeded(), _verified("Passed", ["b"], ["b", "c"], ["a", "d", "e"]), NOW)
    assert out.status.phase == "Failed"
    assert out.status.reason == "VerificationFailed"
    for name in ("b", "c"):
        line = out.status.tasks[name]
        assert line.phase == "Succeeded"
        assert line.reason == "VerificationFailed"
        assert (line.message or "").startswith("not merged")
    assert "depends on b" in (out.status.tasks["c"].message or "")
    assert out.status.tasks["a"].reason is None


def test_a_passing_verification_leaves_the_run_succeeded() -> None:
    run = make_run(merge={"verify": {"command": ["make", "test"]}})
    out = step(run, all_succeeded(), _verified("Passed", [], [], ["a", "b", "c", "d", "e"]), NOW)
    assert out.status.phase == "Succeeded"
    assert out.status.reason == "Merged"
