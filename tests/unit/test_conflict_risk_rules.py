"""Conflicts found early: what a runner sees after its push (real repositories), how a task's status records
it (both launchers' plan.attempt, the operator's decide_task), and how the run aggregates it (plan.risk)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from braid.api import (
    MAX_RISK_FILES,
    MAX_RISK_PAIRS,
    TERMINATION_MESSAGE_LIMIT,
    AgentTaskStatus,
    ResolveRule,
    RiskFile,
    RiskSeen,
    TaskResult,
)
from braid.controller.decide import decide_run, decide_task
from braid.gitops import Repo
from braid.gitops.mergetree import branch_conflicts
from braid.plan.risk import conflict_risk, path_matches, resolve_strategy
from braid.settings import Settings
from gitrepos import make_repo
from test_controller_decisions import NOW, POLICY, apply, child, make_run, observe, pod, running, t

A, B, C = "a" * 40, "b" * 40, "c" * 40


def seen(task: str, commit: str, *paths: str, kind: str = "content") -> RiskSeen:
    return RiskSeen(task=task, commit=commit, files=[RiskFile(path=p, kind=kind) for p in paths or ("README.md",)])


def ok(commit: str, *risks: RiskSeen, truncated: bool = False) -> AgentTaskStatus:
    return AgentTaskStatus(phase="Succeeded", attempts=1, commit=commit, conflict_risk=list(risks),
                           conflict_risk_truncated=truncated)


# -- plan.risk: the aggregation rule (pure) -----------------------------------------------------------------


def test_a_pair_seen_by_the_later_task_is_kept_once_in_name_order():
    run = make_run([t("a"), t("b")])
    risks, truncated = conflict_risk(run, {"a": ok(A), "b": ok(B, seen("a", A, "README.md", "app.py"))})
    assert [(r.tasks, [f.path for f in r.files]) for r in risks] == [(["a", "b"], ["README.md", "app.py"])]
    assert not truncated


def test_both_sides_seeing_each_other_make_one_pair_with_every_file():
    run = make_run([t("a"), t("b")])
    risks, _ = conflict_risk(run, {"a": ok(A, seen("b", B, "x")), "b": ok(B, seen("a", A, "x", "y"))})
    assert [(r.tasks, [f.path for f in r.files]) for r in risks] == [(["a", "b"], ["x", "y"])]


def test_a_pair_seen_against_a_commit_that_changed_is_dropped():
    run = make_run([t("a"), t("b")])
    risks, _ = conflict_risk(run, {"a": ok(C), "b": ok(B, seen("a", A))})
    assert risks == []


def test_a_pair_with_a_task_that_has_not_succeeded_is_not_kept():
    run = make_run([t("a"), t("b")])
    failed = AgentTaskStatus(phase="Failed", commit=A)
    running_ = AgentTaskStatus(phase="Running", commit=A)
    for other in (failed, running_, None):
        assert conflict_risk(run, {"a": other, "b": ok(B, seen("a", A))})[0] == []


def test_a_pair_where_one_task_depends_on_the_other_even_indirectly_is_skipped():
    run = make_run([t("a"), t("m", "a"), t("b", "m")])
    risks, _ = conflict_risk(run, {"a": ok(A), "m": ok(C), "b": ok(B, seen("a", A))})
    assert risks == []


def test_tasks_not_in_the_spec_are_ignored():
    run = make_run([t("a"), t("b")])
    risks, _ = conflict_risk(run, {"a": ok(A, seen("zz", B)), "b": ok(B)})
    assert risks == []


def test_files_a_resolve_rule_settles_are_left_out_and_a_pair_with_none_left_is_dropped():
    run = make_run([t("a"), t("b"), t("c")], merge={"resolve": [{"paths": ["CHANGELOG.md"], "strategy": "union"}]})
    risks, _ = conflict_risk(run, {
        "a": ok(A), "b": ok(B, seen("a", A, "CHANGELOG.md")),
        "c": ok(C, seen("a", A, "CHANGELOG.md", "app.py"), RiskSeen(task="b", commit=B, files=[
            RiskFile(path="CHANGELOG.md", kind="modify/delete")])),
    })
    assert [(r.tasks, [f.path for f in r.files]) for r in risks] == [(["a", "c"], ["app.py"]),
                                                                     (["b", "c"], ["CHANGELOG.md"])]


def test_bounds_and_the_truncated_flag():
    names = [f"t{i:02d}" for i in range(MAX_RISK_PAIRS + 5)]
    run = make_run([t("hub"), *[t(n) for n in names]])
    # both sides of each pair saw the other, each in files of its own: more files than a pair keeps
    tasks = {"hub": ok(A, *[seen(n, B, *[f"g{i}" for i in range(MAX_RISK_FILES)]) for n in names])}
    for n in names:
        tasks[n] = ok(B, seen("hub", A, *[f"f{i}" for i in range(MAX_RISK_FILES)]))
    risks, truncated = conflict_risk(run, tasks)
    assert truncated and len(risks) == MAX_RISK_PAIRS
    assert all(len(r.files) == MAX_RISK_FILES for r in risks)
    # a reporter that left some out makes the status say so
    small = make_run([t("a"), t("b")])
    assert conflict_risk(small, {"a": ok(A), "b": ok(B, seen("a", A), truncated=True)})[1] is True


@pytest.mark.parametrize(("glob", "path", "expected"), [
    ("CHANGELOG.md", "CHANGELOG.md", True),
    ("CHANGELOG.md", "pkg/CHANGELOG.md", True),
    ("docs/*.md", "docs/usage.md", True),
    ("docs/*.md", "docs/deep/usage.md", False),
    ("docs/*.md", "other/docs/usage.md", False),
    ("docs/**/*.md", "docs/deep/er/usage.md", True),
    ("docs/**/*.md", "docs/usage.md", True),
    ("*.md", "a/b.md", True),
    ("a?.txt", "ab.txt", True),
    ("a?.txt", "a/.txt", False),
    ("[ab].txt", "[ab].txt", True),
    ("[ab].txt", "a.txt", False),
])
def test_rule_patterns(glob, path, expected):
    assert path_matches(glob, path) is expected


def test_rules_apply_first_match_and_only_to_content_conflicts():
    rules = [ResolveRule(paths=["docs/*.md"], strategy="ours"), ResolveRule(paths=["*.md"], strategy="union")]
    assert resolve_strategy(rules, "docs/a.md", "content") == "ours"
    assert resolve_strategy(rules, "README.md", "add/add") == "union"
    assert resolve_strategy(rules, "README.md", "modify/delete") is None
    assert resolve_strategy(rules, "app.py", "content") is None


# -- the task's result and status ---------------------------------------------------------------------------


def test_the_termination_message_stays_under_its_limit_and_says_it_left_pairs_out():
    many = [seen(f"task-{i:02d}", "e" * 40, *[f"some/long/directory/name/file-{j}.py" for j in range(MAX_RISK_FILES)])
            for i in range(MAX_RISK_PAIRS)]
    result = TaskResult(run="r", task="a", phase="Succeeded", branch="braid/r/tasks/a", commit=A, conflict_risk=many)
    text = result.compact_json()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    back = TaskResult.model_validate_json(text)
    assert back.commit == A and back.conflict_risk_truncated and 0 < len(back.conflict_risk) < len(many)


def test_the_operator_records_what_the_succeeding_pod_saw():
    run = make_run([t("a")], retry={"limit": 2, "backoffSeconds": 30}, taskTimeoutSeconds=600)
    report = TaskResult(run="r", task="a", phase="Succeeded", branch="braid/r/tasks/a", commit=A,
                        conflict_risk=[seen("b", B, "README.md")]).compact_json()
    task = child(run, "a", suspend=False, status=running())
    plan = decide_task(task, [pod(1, phase="Succeeded", exit_code=0, message=report)], NOW, POLICY)
    assert plan.status.phase == "Succeeded"
    assert plan.status.wire()["conflictRisk"] == [
        {"task": "b", "commit": B, "files": [{"path": "README.md", "kind": "content"}]}]
    again = decide_task(apply(task, plan.status), [pod(1, phase="Succeeded", exit_code=0, message=report)],
                        NOW + timedelta(seconds=5), POLICY)
    assert again.status.conflict_risk == plan.status.conflict_risk


def test_the_run_status_shows_the_pair_with_one_warning_event_while_another_task_runs():
    settings = Settings(runner_image="braid-agent:test")
    run = make_run([t("a"), t("b"), t("slow")], maxParallel=3)
    children = {
        "a": child(run, "a", suspend=False, status=ok(A)),
        "b": child(run, "b", suspend=False, status=ok(B, seen("a", A, "README.md"))),
        "slow": child(run, "slow", suspend=False, status=AgentTaskStatus(phase="Running", attempts=1)),
    }
    plan = decide_run(observe(run, children), settings, NOW)
    assert plan.status.phase == "Running"
    assert plan.status.wire()["conflictRisk"] == [
        {"tasks": ["a", "b"], "files": [{"path": "README.md", "kind": "content"}]}]
    warnings = [e for e in plan.events if e.reason == "ConflictRisk"]
    assert [(e.type, e.message) for e in warnings] == [
        ("Warning", "tasks a and b would conflict when merged, in README.md (content); found before the merge")]
    again = decide_run(observe(run.model_copy(update={"status": plan.status}), children), settings, NOW)
    assert again.status.conflict_risk == plan.status.conflict_risk
    assert not [e for e in again.events if e.reason == "ConflictRisk"]


# -- the runner's check, on real repositories ---------------------------------------------------------------


def test_branch_conflicts_fetches_the_other_task_branches_and_reports_the_conflicting_ones(tmp_path):
    origin = make_repo(tmp_path / "origin", {"README.md": "# app\n", "app.py": "x = 1\n"})
    origin.commit({"README.md": "# a\n"}, "a", branch="braid/r/tasks/a")
    origin.commit({"app.py": "x = 2\n"}, "c", branch="braid/r/tasks/c")
    origin.commit({"README.md": "# other run\n"}, "o", branch="braid/other/tasks/x")
    mine = origin.commit({"README.md": "# b\n"}, "b", branch="braid/r/tasks/b")
    # a dependent of b: contains b's commit, so it never conflicts with it
    origin.checkout("braid/r/tasks/d", "braid/r/tasks/b")
    origin.commit({"d.txt": "d\n"}, "d")
    origin.checkout("main")
    work = make_repo(tmp_path / "work")
    work.git("remote", "add", "origin", str(origin.path))
    work.git("fetch", "--quiet", "origin", "braid/r/tasks/b")
    found, truncated = branch_conflicts(Repo(work.path), "braid/r/tasks/", "b", mine)
    assert not truncated
    assert [(name, oid, [(f.path, f.kind) for f in files]) for name, oid, files in found] == [
        ("a", origin.rev("braid/r/tasks/a"), [("README.md", "content")])]
