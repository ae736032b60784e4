"""One engine, two launchers: the same spec and the same task outcomes give the same status.

A real `braid run --local` runs a DAG with a failure, a retry, a skip and a conflict on real
git repositories. Its attempts' results then drive the operator's decisions (decide_run and
decide_task, as the reconcilers call them) attempt for attempt, as if each had been a pod;
its merge report is the merge Job's. Both end in the same ParallelRun status, timestamps,
pod names and the resource usage only a local run measures aside.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from braid.api import AgentTask, MergeStatus, ParallelRun, TaskResult
from braid.controller.decide import MergeView, PodView, RunObservation, TaskPolicy, Terminated, decide_run, decide_task
from braid.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))

from localrun import Workspace, make_origin, manifest, script_task, write

# resourceUsage: what a local run measured of its agents' processes; the cluster leaves it to `kubectl top`
VOLATILE = {"startedAt", "finishedAt", "lastTransitionTime", "pod", "resourceUsage"}


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


class PlayedCluster:
    """The operator's two reconcilers over in-memory objects; pods end as the local attempts did."""

    def __init__(self, run: ParallelRun, results: dict[str, list[TaskResult]], merge: MergeStatus):
        self.run = run.model_copy(deep=True)
        self.run.metadata.namespace, self.run.metadata.uid, self.run.metadata.generation = "ns", "uid", 1
        self.results, self.report = results, merge
        self.tasks: dict[str, AgentTask] = {}
        self.pods: dict[str, list[PodView]] = {}
        self.job = False
        self.last_pushed: dict[str, list[str | None]] = {}
        """Per task, what each attempt's pod was told braid last pushed to the task branch."""
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.settings = Settings(runner_image="braid-agent:test")

    def merge_view(self) -> MergeView:
        return MergeView(exists=True, outcome="Succeeded", report=self.report) if self.job else MergeView()

    def reconcile_run(self) -> None:
        plan = decide_run(RunObservation(run=self.run, tasks=self.tasks, merge=self.merge_view()), self.settings,
                          self.now)
        for manifest_ in plan.create:
            if manifest_["kind"] == "AgentTask":
                body = json.loads(json.dumps(manifest_))
                body["metadata"]["uid"], body["metadata"]["generation"] = f"uid-{body['spec']['task']}", 1
                self.tasks[body["spec"]["task"]] = AgentTask.model_validate(body)
            elif manifest_["kind"] == "Job":
                self.job = True
        by_name = {t.metadata.name: n for n, t in self.tasks.items()}
        for name, patch in [*plan.admit.items(), *plan.skip.items(), *plan.respec.items()]:
            task = self.tasks[by_name[name]]
            spec = {**task.spec.wire(), **patch["spec"]}
            self.tasks[by_name[name]] = task.model_copy(update={"spec": type(task.spec).model_validate(spec)})
        self.run.status = plan.status

    def reconcile_task(self, name: str) -> None:
        task = self.tasks[name]
        pods = self.pods.setdefault(name, [])
        plan = decide_task(task, pods, self.now, TaskPolicy())
        if plan.create_attempt is not None:
            assert plan.attempt_spec is not None
            self.last_pushed.setdefault(name, []).append(plan.attempt_spec.last_pushed)
            result = self.results[name][plan.create_attempt - 1]
            code = 0 if result.phase == "Succeeded" else 1
            pods.append(PodView(name=f"{task.metadata.name}-{plan.create_attempt}", attempt=plan.create_attempt,
                                phase="Succeeded" if code == 0 else "Failed", created=self.now,
                                terminated=Terminated(code, None, result.compact_json())))
        self.tasks[name] = task.model_copy(update={"status": plan.status})

    def play(self) -> dict[str, Any]:
        for _ in range(200):
            self.reconcile_run()
            if self.run.status and self.run.status.finished_at:
                return self.run.status.wire()
            for name in list(self.tasks):
                self.reconcile_task(name)
            self.now += timedelta(seconds=5)
        raise AssertionError("the played cluster never finished the run")


def test_a_local_run_and_a_cluster_run_of_the_same_spec_end_in_the_same_status(ws: Workspace,
                                                                                tmp_path: Path) -> None:
    origin = make_origin(tmp_path / "origin", {"README.md": "# app\n\nTBD\n"})
    tasks = [
        script_task("schema", [write("db/schema.sql", "CREATE TABLE users (id INT);\n")]),
        script_task("models", [write("app/models.py", "class User: ...\n")], ["schema"]),
        # fails on its first attempt only, then succeeds: a retry
        {"name": "flaky", "prompt": "p", "agent": {"backend": "command", "command": [
            "sh", "-c", "if [ -e .tried ]; then echo ok > flaky.txt; else touch .tried; exit 3; fi"]}},
        script_task("broken", [{"op": "fail", "message": "cannot do it"}]),
        script_task("after-broken", [write("x.txt", "x\n")], ["broken"]),
        script_task("docs-a", [{"op": "replace", "path": "README.md", "old": "TBD", "new": "Version A"}]),
        script_task("docs-b", [{"op": "replace", "path": "README.md", "old": "TBD", "new": "Version B"}]),
    ]
    data = manifest("same", origin, tasks, maxParallel=2, retry={"limit": 1, "backoffSeconds": 0})
    run_file = ws.write(data)
    local = ws.run(run_file)
    assert local.status is not None, local.stderr
    assert local.status["phase"] == "Failed", local.stderr
    lines = local.status["tasks"]
    assert (lines["flaky"]["phase"], lines["flaky"]["attempts"]) == ("Succeeded", 2)
    assert (lines["broken"]["phase"], lines["after-broken"]["reason"]) == ("Failed", "DependencyFailed")
    assert [c["task"] for c in local.status["merge"]["conflicts"]] == ["docs-b"]
    assert {c["type"] for c in local.status["conditions"]} == {"Valid", "Suspended", "Succeeded"}

    results: dict[str, list[TaskResult]] = {}
    for task in tasks:
        task_dir = ws.state / "tasks" / task["name"]
        files = sorted(task_dir.glob("result-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        results[task["name"]] = [TaskResult.model_validate_json(p.read_text()) for p in files]
    merge = MergeStatus.model_validate(local.status["merge"])
    run = ParallelRun.model_validate(data)
    played = PlayedCluster(run, results, merge)
    cluster = played.play()

    assert strip(cluster) == strip(local.status)
    # each attempt was told the same record of the task branch: what the attempt before it pushed
    assert played.last_pushed["flaky"] == [None, results["flaky"][0].commit]
    for name, told in played.last_pushed.items():
        local_spec = json.loads((ws.state / "tasks" / name / "spec.json").read_text())
        assert local_spec.get("lastPushed") == told[-1], name


def test_a_verification_that_excludes_a_culprit_ends_in_the_same_status_on_both(ws: Workspace,
                                                                              tmp_path: Path) -> None:
    origin = make_origin(tmp_path / "origin", {"README.md": "# app\n"})
    tasks = [
        script_task("base", [write("base.txt", "b\n")]),
        script_task("breaks", [write("broken", "x\n")]),
        script_task("on-breaks", [write("more.txt", "m\n")], ["breaks"]),
        script_task("fine", [write("fine.txt", "f\n")], ["base"]),
    ]
    check = ["python3", "-c", "import os, sys; sys.exit(1 if os.path.exists('broken') else 0)"]
    data = manifest("verified", origin, tasks, merge={"verify": {"command": check}, "onVerifyFailure": "exclude"})
    local = ws.run(ws.write(data))
    assert local.status is not None, local.stderr
    assert local.status["reason"] == "VerificationFailed", local.stderr
    assert local.status["merge"]["verification"]["excluded"] == ["breaks", "on-breaks"]
    results = {t["name"]: [TaskResult.model_validate_json((ws.state / "tasks" / t["name"] / "result-1.json")
                                                          .read_text())] for t in tasks}
    played = PlayedCluster(ParallelRun.model_validate(data), results,
                           MergeStatus.model_validate(local.status["merge"]))
    assert strip(played.play()) == strip(local.status)
