"""The operator against a real API server: DAG scheduling, the merge Job, status, printer columns, metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from braid.api import ConflictFile, MergeStatus
from kube_cluster import Cluster, wait_for
from test_operator_harness import Kit, Operator, braid_operator, conflicted_report, kit, operator_env, task

pytestmark = pytest.mark.cluster
__all__ = ["braid_operator", "kit", "operator_env"]  # fixtures

DAG = [
    task("schema"),
    task("models", "schema"),
    task("api", "models"),
    task("ui", "api"),
    task("tests", "api", "models"),
    task("docs"),
]
DEPS = {t["name"]: set(t["dependsOn"]) for t in DAG}


def test_six_task_dag_runs_in_dependency_order_two_at_a_time_then_merges(
    kit: Kit, braid_operator: Operator, cluster: Cluster
) -> None:
    kit.create_run("feature", DAG, maxParallel=2)
    tasks = wait_for(lambda: (t := kit.agenttasks()) and len(t) == 6 and t, timeout=60, what="six AgentTasks")
    for name, obj in tasks.items():
        assert obj["metadata"]["name"] == f"feature-{name}"
        assert obj["metadata"]["labels"]["braid.dev/run"] == "feature"
        assert obj["metadata"]["labels"]["braid.dev/task"] == name
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("ParallelRun", "feature", True)

    seen: list[str] = []
    violations: list[str] = []

    def observe() -> tuple[set[str], set[str]]:
        """Live pods now; every pod that appears must have its dependencies succeeded."""
        phases = {name: (t.get("status") or {}).get("phase") for name, t in kit.agenttasks().items()}
        live = {p.metadata.labels["braid.dev/task"] for p in kit.live_agent_pods().values()}
        if len(live) > 2:
            violations.append(f"{len(live)} pods at once: {sorted(live)}")
        for name in sorted(live - set(seen)):
            seen.append(name)
            missing = [d for d in DEPS[name] if phases.get(d) != "Succeeded"]
            if missing:
                violations.append(f"{name} started before {missing} succeeded")
        return live, {n for n, p in phases.items() if p == "Succeeded"}

    def settled(done: set[str]) -> set[str] | None:
        live, succeeded = observe()
        ready = {n for n in DEPS if n not in succeeded and DEPS[n] <= succeeded}
        if succeeded == done and live <= ready and len(live) == min(2, len(ready)):
            return live or {"-"}
        return None

    done: set[str] = set()
    while len(done) < 6:
        live = wait_for(lambda: settled(done), timeout=60, what=f"two pods of ready tasks after {sorted(done)}")
        name = sorted(live)[0]
        kit.finish(f"feature-{name}-1", "feature", name, cost=0.5)
        done.add(name)
        wait_for(lambda name=name: kit.task_phase(f"feature-{name}") == "Succeeded", timeout=60,
                 what=f"{name} to succeed")
    assert not violations, violations
    assert seen[:2] == ["schema", "docs"] or set(seen[:2]) == {"schema", "docs"}
    assert seen.index("models") < seen.index("api") < seen.index("ui")

    # every task ended: one merge Job, in the runner image, with the request in its environment
    (job,) = wait_for(lambda: kit.jobs(), timeout=60, what="the merge Job")
    assert job.metadata.name == "feature-merge"
    assert job.metadata.owner_references[0].name == "feature"
    container = job.spec.template.spec.containers[0]
    assert container.command[:2] == ["braid", "merge"]
    env = {e.name: e.value for e in container.env}
    request = json.loads(env["BRAID_MERGE_REQUEST"])
    assert sorted(t["name"] for t in request["tasks"]) == sorted(DEPS)
    assert request["integrationBranch"] == "braid/feature/merged"
    wait_for(lambda: kit.status("feature").get("phase") == "Merging", timeout=30, what="phase Merging")

    report = conflicted_report("feature", ["schema", "docs", "models", "api", "tests"], "ui", "api")
    kit.finish_merge("feature", report)
    status = wait_for(lambda: (s := kit.status("feature")).get("phase") == "Conflicted" and s, timeout=60,
                      what="the run to end Conflicted")
    merge = status["merge"]
    assert merge["conflictCount"] == 2
    assert [c["task"] for c in merge["conflicts"]] == ["ui"]
    assert {f["path"]: f["kind"] for f in merge["conflicts"][0]["files"]} == {"app/api.py": "content",
                                                                            "README.md": "add/add"}
    assert status["progress"] == "6/6"
    assert status["counts"]["succeeded"] == 6
    assert status["usage"]["costUSD"] == pytest.approx(3.0)
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "False"
    (conflict,) = kit.wait_event("feature", "MergeConflict")
    assert conflict[0] == "Warning" and "ui" in conflict[2] and "app/api.py (content)" in conflict[2]

    # kubectl get prun: the printer columns
    table = cluster.kubectl("get", "prun", "-n", kit.namespace).stdout.splitlines()
    header, row = re.split(r"\s{2,}", table[0].strip()), re.split(r"\s{2,}", table[1].strip())
    columns = dict(zip(header, row, strict=False))
    assert columns["NAME"] == "feature"
    assert columns["PHASE"] == "Conflicted"
    assert columns["PROGRESS"] == "6/6"
    assert columns["RUNNING"] == "0"
    assert columns["FAILED"] == "0"
    assert float(columns["COST"]) == pytest.approx(3.0)
    assert columns["CONFLICTS"] == "2"


def test_priority_decides_which_ready_task_takes_the_one_slot(kit: Kit, braid_operator: Operator) -> None:
    # the same file locally starts hotfix, lib, app, docs, chore (tests/e2e/test_local_run.py)
    tasks = [{**task(name, *deps), "priority": prio} for name, prio, deps in
             (("chore", -5, ()), ("docs", 0, ()), ("hotfix", 10, ()), ("lib", 0, ()), ("app", 0, ("lib",)))]
    kit.create_run("prio", tasks, maxParallel=1, scheduling={"strategy": "priority"})
    started: list[str] = []
    for _ in tasks:
        live = wait_for(lambda: (p := kit.live_agent_pods()) and len(p) == 1 and p, timeout=60,
                        what=f"one agent pod after {started}")
        (pod,) = live.values()
        name = pod.metadata.labels["braid.dev/task"]
        started.append(name)
        kit.finish(pod.metadata.name, "prio", name, cost=0.1)
        wait_for(lambda name=name: kit.task_phase(f"prio-{name}") == "Succeeded", timeout=60,
                 what=f"{name} to succeed")
    assert started == ["hotfix", "lib", "app", "docs", "chore"]


def test_braid_cancel_stops_the_agent_and_the_run_ends_cancelled(kit: Kit, braid_operator: Operator,
                                                                 cluster: Cluster) -> None:
    kit.create_run("stop", [task("a"), task("b"), task("c", "a")], maxParallel=1)
    wait_for(lambda: len(kit.live_agent_pods()) == 1, timeout=60, what="the first agent pod")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.run([sys.executable, "-m", "braid", "cancel", "stop", "--cluster", "-n", kit.namespace,
                           "--wait", "90"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "run stop: Cancelled"
    status = kit.status("stop")
    assert {n: t["phase"] for n, t in status["tasks"].items()} == {"a": "Cancelled", "b": "Cancelled",
                                                                  "c": "Cancelled"}
    assert not kit.live_agent_pods() and not kit.jobs()
    # a cancelled run stays cancelled
    with pytest.raises(ApiException) as refused:
        kit.custom.patch_namespaced_custom_object("braid.dev", "v1alpha1", kit.namespace, "parallelruns", "stop",
                                                  {"spec": {"cancel": False}})
    assert refused.value.status == 422 and "cannot be resumed" in refused.value.body


@pytest.mark.parametrize(
    ("tasks", "reason", "words"),
    [
        ([task("a", "c"), task("b", "a"), task("c", "b")], "DependencyCycle", "a -> c -> b -> a"),
        ([task("a"), task("b", "nope")], "UnknownDependency", "unknown task 'nope'"),
    ],
)
def test_invalid_graph_fails_with_a_condition_and_an_event_and_creates_nothing(
    kit: Kit, braid_operator: Operator, tasks: list[dict], reason: str, words: str
) -> None:
    kit.create_run("broken", tasks)
    status = wait_for(lambda: (s := kit.status("broken")).get("phase") == "Failed" and s, timeout=60,
                      what="the run to fail")
    valid = {c["type"]: c for c in status["conditions"]}["Valid"]
    assert (valid["status"], valid["reason"]) == ("False", reason)
    assert words in valid["message"]
    assert status["reason"] == reason
    events = kit.wait_event("broken", reason)
    assert events[0][0] == "Warning" and words in events[0][2]
    assert kit.agenttasks() == {}
    assert kit.agent_pods() == {}
    assert kit.jobs() == []


def test_a_task_name_taken_by_another_run_is_reported(kit: Kit, braid_operator: Operator) -> None:
    # run "a-b" task "c" and run "a" task "b-c" both want the AgentTask "a-b-c"
    kit.create_run("a-b", [task("c")])
    wait_for(lambda: "c" in kit.agenttasks(), timeout=60, what="the first run's AgentTask")
    kit.create_run("a", [task("b-c")])
    events = kit.wait_event("a", "NameCollision", timeout=60)
    assert events[0][0] == "Warning"
    assert "AgentTask a-b-c" in events[0][2] and "'a-b'" in events[0][2]
    # the first run's task is left as it was
    assert kit.agenttask("a-b-c")["metadata"]["labels"]["braid.dev/run"] == "a-b"


def test_metrics_show_task_counts_and_cost_of_a_finished_run(kit: Kit, braid_operator: Operator) -> None:
    kit.create_run("small", [task("one"), task("two", "one")], maxParallel=2,
                   agent={"backend": "script", "model": "test-model"})
    for name, cost in (("one", 0.25), ("two", 1.5)):
        wait_for(lambda name=name: f"small-{name}-1" in kit.live_agent_pods(), timeout=60, what=f"pod of {name}")
        kit.finish(f"small-{name}-1", "small", name, cost=cost, tokens=2000)
    kit.finish_merge("small", MergeStatus(phase="Succeeded", branch="braid/small/merged", merged=["one", "two"],
                                          commit="ab" * 20))
    wait_for(lambda: kit.status("small").get("phase") == "Succeeded", timeout=60, what="the run to succeed")

    ns = kit.namespace

    def scraped() -> dict[str, float]:
        values = {}
        for line in braid_operator.metrics().splitlines():
            if line.startswith("braid_") and f'namespace="{ns}"' in line:
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def finished() -> dict[str, float] | None:
        values = scraped()
        return values if values.get(f'braid_runs{{namespace="{ns}",phase="Succeeded"}}') == 1 else None

    values = wait_for(finished, timeout=30, what="the finished run in /metrics")
    assert values[f'braid_tasks{{namespace="{ns}",phase="Succeeded"}}'] == 2
    assert values[f'braid_cost_usd_total{{model="test-model",namespace="{ns}"}}'] == pytest.approx(1.75)
    assert values[f'braid_tokens_total{{kind="input",model="test-model",namespace="{ns}"}}'] == 4000
    assert values[f'braid_tokens_total{{kind="output",model="test-model",namespace="{ns}"}}'] == 2000
    assert values[f'braid_task_duration_seconds_count{{namespace="{ns}",phase="Succeeded"}}'] == 2
    assert values[f'braid_runs_finished_total{{namespace="{ns}",phase="Succeeded"}}'] == 1
    text = braid_operator.metrics()
    assert "braid_reconcile_duration_seconds_bucket" in text
    assert "braid_running_agents" in text


def test_a_report_too_large_for_a_termination_message_is_read_from_its_configmap(
    kit: Kit, braid_operator: Operator
) -> None:
    kit.create_run("big", [task("a"), task("b")], maxParallel=2)
    for name in ("a", "b"):
        wait_for(lambda name=name: f"big-{name}-1" in kit.live_agent_pods(), timeout=60, what=f"pod of {name}")
        kit.finish(f"big-{name}-1", "big", name)
    report = conflicted_report("big", ["a"], "b", "a")
    report.conflicts[0].files = [
        ConflictFile(path=f"src/module_{i:03d}/handlers.py", kind="content", collides_with=["a"]) for i in range(120)
    ]
    report.conflict_count = 120
    text = json.dumps(report.wire(), separators=(",", ":"))
    assert len(text) > 4096
    pod = wait_for(lambda: kit.merge_pod("big"), timeout=60, what="the merge pod")
    # what `braid merge` does in a pod allowed to write the report ConfigMap; the kubelet cuts the rest
    configmap = wait_for(lambda: kit.core.read_namespaced_config_map("big-merge-report", kit.namespace),
                         timeout=30, what="the report ConfigMap")
    assert configmap.metadata.owner_references[0].name == "big"
    kit.core.patch_namespaced_config_map("big-merge-report", kit.namespace, {"data": {"report.json": text}},
                                         _content_type="application/merge-patch+json")
    kit.terminate(pod.metadata.name, container="merge", phase="Succeeded", exit_code=0, message=text[:4096])

    status = wait_for(lambda: (s := kit.status("big")).get("phase") == "Conflicted" and s, timeout=60,
                      what="the run to end Conflicted")
    assert status["merge"]["conflictCount"] == 120
    assert len(status["merge"]["conflicts"][0]["files"]) == 120


def documented_permissions(namespace: str, name: str) -> list[dict]:
    """The RBAC of docs/operator.md, for an operator that watches one namespace."""
    role_rules = [
        {"apiGroups": ["braid.dev"], "resources": ["parallelruns", "agenttasks"],
         "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["braid.dev"], "resources": ["parallelruns/status", "agenttasks/status"],
         "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace}, "rules": role_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": subject},
    ]


def test_the_documented_permissions_are_enough(cluster: Cluster, crds: object, kit: Kit, tmp_path: Path) -> None:
    name = f"braid-operator-{kit.namespace}"
    objects = documented_permissions(kit.namespace, name)
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    cluster.kubectl("apply", "-f", str(manifest))
    operator = None
    try:
        token = cluster.kubectl("create", "token", name, "-n", kit.namespace, "--duration=1h").stdout.strip()
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        config["users"] = [{"name": "operator", "user": {"token": token}}]
        for context in config["contexts"]:
            context["context"]["user"] = "operator"
        kubeconfig = tmp_path / "operator.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))

        operator = Operator(cluster, kit.namespace, tmp_path / "operator.log",
                            env={"KUBECONFIG": str(kubeconfig), "BRAID_DEADLINE_GRACE_SECONDS": "0"})
        operator.start()
        kit.create_run("least", [task("a"), task("b", "a")], maxParallel=1)
        wait_for(lambda: "least-a-1" in kit.live_agent_pods(), timeout=60, what="pod of a")
        kit.finish("least-a-1", "least", "a")
        wait_for(lambda: "least-b-1" in kit.live_agent_pods(), timeout=60, what="pod of b")
        kit.patch_run("least", {"spec": {"suspend": True}})
        wait_for(lambda: not kit.live_agent_pods(), timeout=60, what="suspension to delete the pod")
        kit.patch_run("least", {"spec": {"suspend": False}})
        wait_for(lambda: "least-b-2" in kit.live_agent_pods(), timeout=60, what="the resumed pod of b")
        kit.finish("least-b-2", "least", "b")
        kit.finish_merge("least", MergeStatus(phase="Succeeded", branch="braid/least/merged", merged=["a", "b"]))
        wait_for(lambda: kit.status("least").get("phase") == "Succeeded", timeout=60, what="the run to succeed")
        kit.wait_event("least", "Succeeded")
        kit.wait_event("least-b", "Suspended")
        assert "Forbidden" not in operator.log_tail(500), operator.log_tail(500)
    finally:
        if operator is not None:
            operator.stop()
            print(f"--- operator log (tail) ---\n{operator.log_tail(200)}")
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def test_the_merge_pods_report_writer_fills_the_configmap_the_operator_reads(
    cluster: Cluster, kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from braid.controller import report

    kit.core.create_namespaced_config_map(kit.namespace, {"metadata": {"name": "w-merge-report"}, "data": {}})
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text(kit.namespace)
    monkeypatch.setattr(report, "NAMESPACE_FILE", namespace_file)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    text = json.dumps(conflicted_report("w", ["a"], "b", "a").wire())

    monkeypatch.delenv(report.CONFIGMAP_ENV, raising=False)
    assert report.publish_merge_report(text) is False
    monkeypatch.setenv(report.CONFIGMAP_ENV, "w-merge-report")
    assert report.publish_merge_report(text) is True
    data = kit.core.read_namespaced_config_map("w-merge-report", kit.namespace).data
    assert MergeStatus.model_validate_json(data["report.json"]).conflict_count == 2
