"""A ParallelRun end to end with nothing played: the operator as a subprocess, its pods
scheduled by the cluster's scheduler onto the node of hack/node.sh, the agent-runner
image built from its Dockerfile, the `script` backend cloning from and pushing to a git
daemon on the node network, and the merge Job integrating the task branches there.

Five tasks, two at a time: `models` depends on `schema` and requires its file; `docs-intro`
and `docs-usage` rewrite the same README line, so the merge reports one conflict and the
run ends Conflicted. Everything is checked where it happened: the pods on the node, the
Job, the run's status, `kubectl get prun`, and the branches in the git server's repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gitserver import GIT_ENV, GitServer, git
from kube_cluster import Cluster, wait_for
from node_fixtures import agent_image, git_server, node, tail
from test_operator_harness import Kit, Operator, braid_operator, kit

# fixture setup counts against the timeout: a cold machine builds the kubelet and the image
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]
__all__ = ["agent_image", "braid_operator", "git_server", "kit", "node"]  # fixtures

RUN = "feature"
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
README = "# app\n\nStatus: TBD\n"


def script(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"script": {"steps": list(steps)}}


TASKS = [
    {"name": "schema", "prompt": "Add a users table.", "agent": script(
        {"op": "write", "path": "db/schema.sql", "content": "CREATE TABLE users (id INTEGER PRIMARY KEY);\n"})},
    {"name": "models", "prompt": "Add a User model for the users table.", "dependsOn": ["schema"], "agent": script(
        {"op": "require", "path": "db/schema.sql"},
        {"op": "write", "path": "app/models.py", "content": "class User:\n    id: int\n"})},
    {"name": "cli", "prompt": "Add an entry point.", "agent": script(
        {"op": "write", "path": "app/cli.py", "content": "print('hello')\n"})},
    {"name": "docs-intro", "prompt": "Say what the app is.", "agent": script(
        {"op": "replace", "path": "README.md", "old": "TBD", "new": "a tiny user service"})},
    {"name": "docs-usage", "prompt": "Say how to run the app.", "agent": script(
        {"op": "replace", "path": "README.md", "old": "TBD", "new": "run python -m app.cli"})},
]
DEPS = {t["name"]: set(t.get("dependsOn", [])) for t in TASKS}
FILES = {"schema": "db/schema.sql", "models": "app/models.py", "cli": "app/cli.py",
         "docs-intro": "README.md", "docs-usage": "README.md"}


def is_ancestor(repo: Path, ancestor: str, commit: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", ancestor, commit],
                          env={**os.environ, **GIT_ENV}, capture_output=True, check=False).returncode == 0


@pytest.fixture
def operator_env(agent_image: str) -> dict[str, str]:
    """The real thing: the image loaded into the node, never pulled, placed by the real scheduler."""
    return {
        "BRAID_RUNNER_IMAGE": agent_image,
        "BRAID_IMAGE_PULL_POLICY": "Never",
        # the cluster's own scheduler (the harness names one that does not exist)
        "BRAID_SCHEDULER_NAME": "default-scheduler",
        # the merge Job takes the defaults: as small as the tasks
        "BRAID_DEFAULT_CPU_REQUEST": RESOURCES["requests"]["cpu"],
        "BRAID_DEFAULT_MEMORY_REQUEST": RESOURCES["requests"]["memory"],
        "BRAID_DEFAULT_CPU_LIMIT": RESOURCES["limits"]["cpu"],
        "BRAID_DEFAULT_MEMORY_LIMIT": RESOURCES["limits"]["memory"],
        "BRAID_TERMINATION_GRACE_SECONDS": "10",
    }


def diagnose(cluster: Cluster, kit: Kit, op: Operator, node: dict[str, str]) -> str:
    """What a failure needs: the run, its pods and Job, their logs, and the kubelet's log."""
    ns = kit.namespace
    parts = [
        cluster.kubectl("-n", ns, "get", "prun,atask,pods,jobs", "-o", "wide", check=False).stdout,
        json.dumps(kit.status(RUN), indent=1)[-4000:],
        cluster.kubectl("-n", ns, "describe", "pods", check=False).stdout[-6000:],
    ]
    for pod in kit.core.list_namespaced_pod(ns).items:
        logs = cluster.kubectl("-n", ns, "logs", pod.metadata.name, "--all-containers", "--prefix", "--tail=30",
                               check=False)
        parts.append(f"--- log of {pod.metadata.name} ---\n{logs.stdout}{logs.stderr}")
    parts.append(f"--- operator ---\n{op.log_tail(80)}")
    parts.append(f"--- kubelet ---\n{tail(node['kubelet_log'], 20)}")
    return "\n".join(parts)


def run_ended(cluster: Cluster, kit: Kit, op: Operator, node: dict[str, str], name: str) -> dict[str, Any]:
    """The run's status once it reached a final phase; what went on, when it did not."""
    try:
        return wait_for(lambda: (s := kit.status(name)).get("phase") in ("Succeeded", "Conflicted", "Failed")
                        and s or None, timeout=600, interval=1, what=f"ParallelRun {name} to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(cluster, kit, op, node)}") from None


def running_agents(kit: Kit) -> list[str]:
    """Pods whose agent has not ended. A real kubelet reports the container terminated before it
    moves the pod to its final phase (after tearing down the sandbox); the slot is free from then on."""
    return sorted(name for name, pod in kit.live_agent_pods().items()
                  if not any(cs.state.terminated for cs in pod.status.container_statuses or []))


def timeline(kit: Kit) -> str:
    """Each agent pod's creation, start and end, and the run's TaskStarted Events."""
    lines = []
    for name, pod in sorted(kit.agent_pods().items(), key=lambda p: p[1].metadata.creation_timestamp):
        state = (pod.status.container_statuses or [None])[0]
        ran = state.state.terminated if state and state.state.terminated else None
        lines.append(f"{name}: created {pod.metadata.creation_timestamp:%H:%M:%S}, phase {pod.status.phase}"
                     + (f", ran {ran.started_at:%H:%M:%S}-{ran.finished_at:%H:%M:%S}" if ran else ""))
    lines += [message for _, reason, message in kit.events(RUN) if reason == "TaskStarted"]
    return "\n".join(lines)


def test_a_run_on_a_real_node_merges_its_work_into_the_integration_branch(
    cluster: Cluster, node: dict[str, str], git_server: GitServer, kit: Kit, braid_operator: Operator
) -> None:
    bare = git_server.create_repo(f"{kit.namespace}.git", {"README.md": README, "app/__init__.py": ""})
    base = git(bare, "rev-parse", "main")
    kit.create_run(
        RUN, TASKS,
        repo={"url": git_server.url(f"{kit.namespace}.git"), "baseRef": "main"},
        agent={"backend": "script"}, maxParallel=2, retry={"limit": 0, "backoffSeconds": 0},
        resources=RESOURCES, taskTimeoutSeconds=120,
    )

    # at most two agent pods live at any time, watched while the run goes
    crowded: list[list[str]] = []

    def ended() -> dict[str, Any] | None:
        live = running_agents(kit)
        if len(live) > 2:
            crowded.append(live)
        status = kit.status(RUN)
        return status if status.get("phase") in ("Succeeded", "Conflicted", "Failed") else None

    try:
        status = wait_for(ended, timeout=300, interval=0.5, what=f"ParallelRun {RUN} to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(cluster, kit, braid_operator, node)}") from None
    assert status["phase"] == "Conflicted", diagnose(cluster, kit, braid_operator, node)
    assert not crowded, f"more than maxParallel=2 agent pods at once: {crowded}\n{timeline(kit)}"

    # every task succeeded, once, with a commit
    tasks = status["tasks"]
    assert set(tasks) == set(DEPS)
    for name, task in tasks.items():
        assert task["phase"] == "Succeeded", (name, task)
        assert task["attempts"] == 1, (name, task)
        assert re.fullmatch(r"[0-9a-f]{40}", task.get("commit") or ""), (name, task)
        assert task["branch"] == f"braid/{RUN}/tasks/{name}"
    assert status["progress"] == "5/5"
    assert status["counts"]["succeeded"] == 5

    # the pods really ran on the node, each to exit 0 with its result as the termination message
    # (the operator goes on as soon as a container has terminated; the kubelet moves the pod to its
    # final phase once the sandbox is gone)
    pods = wait_for(lambda: (p := kit.agent_pods()) and all(x.status.phase in ("Succeeded", "Failed")
                                                            for x in p.values()) and p,
                    timeout=60, what="the agent pods to reach a final phase")
    assert sorted(pods) == sorted(f"{RUN}-{name}-1" for name in DEPS)
    for pod in pods.values():
        name = pod.metadata.labels["braid.dev/task"]
        assert pod.spec.node_name == node["node_name"], pod.metadata.name
        assert pod.spec.scheduler_name == "default-scheduler"
        assert pod.spec.containers[0].image == braid_operator.env["BRAID_RUNNER_IMAGE"]
        assert pod.status.phase == "Succeeded", pod.metadata.name
        statuses = {c.name: c for c in pod.status.container_statuses}
        assert set(statuses) == {"agent", "runner"}
        assert statuses["agent"].state.terminated.exit_code == 0, statuses["agent"].state.terminated
        container = statuses["runner"]
        assert container.state.terminated.exit_code == 0, (pod.metadata.name, container.state.terminated)
        result = json.loads(container.state.terminated.message)
        assert (result["phase"], result["commit"]) == ("Succeeded", tasks[name]["commit"]), result
        assert FILES[name] in result["changedFiles"], result
    # models' pod was created only after schema's container had finished
    schema_done = next(c for c in pods[f"{RUN}-schema-1"].status.container_statuses
                       if c.name == "runner").state.terminated.finished_at
    assert pods[f"{RUN}-models-1"].metadata.creation_timestamp >= schema_done

    # the merge Job completed, its pod on the node too
    def completed() -> client.V1Job | None:
        (job,) = kit.jobs()
        conditions = {c.type: c.status for c in job.status.conditions or []}
        assert conditions.get("Failed") != "True", f"the merge Job failed: {job.status}"
        return job if conditions.get("Complete") == "True" else None

    job = wait_for(completed, timeout=60, what="the merge Job to complete")
    assert job.metadata.name == f"{RUN}-merge"
    assert job.status.succeeded == 1
    merge_pod = kit.merge_pod(RUN)
    assert merge_pod.spec.node_name == node["node_name"]
    assert merge_pod.status.container_statuses[0].state.terminated.exit_code == 0

    # the merge report: docs-usage collides with docs-intro on README.md; the rest merged
    merge = status["merge"]
    assert merge["phase"] == "Conflicted", merge
    assert merge["branch"] == f"braid/{RUN}/merged"
    assert sorted(merge["merged"]) == ["cli", "docs-intro", "models", "schema"]
    assert merge["merged"].index("schema") < merge["merged"].index("models")
    assert merge["notMerged"] == ["docs-usage"]
    assert merge["conflictCount"] == 1
    (conflict,) = merge["conflicts"]
    assert conflict["task"] == "docs-usage"
    assert conflict["collidesWith"] == ["docs-intro"]
    assert [(f["path"], f["kind"], f["collidesWith"]) for f in conflict["files"]] == [
        ("README.md", "content", ["docs-intro"])
    ]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "False"
    (event,) = kit.wait_event(RUN, "MergeConflict")
    assert event[0] == "Warning" and "docs-usage" in event[2] and "README.md (content)" in event[2], event
    # found before the merge too: the later of the two docs tasks saw the other's branch right after its push
    assert status["conflictRisk"] == [
        {"tasks": ["docs-intro", "docs-usage"], "files": [{"path": "README.md", "kind": "content"}]}]
    (risk,) = kit.wait_event(RUN, "ConflictRisk")
    assert risk[0] == "Warning" and "docs-intro and docs-usage" in risk[2] and "README.md (content)" in risk[2], risk

    # the git server holds it all: task branches at the commits in status, each on top of main ...
    for name, task in tasks.items():
        assert git(bare, "rev-parse", f"refs/heads/{task['branch']}") == task["commit"], name
        assert is_ancestor(bare, base, task["commit"]), name
    # ... the dependency's file in the dependent's branch ...
    models = tasks["models"]["commit"]
    assert git(bare, "show", f"{models}:db/schema.sql") == "CREATE TABLE users (id INTEGER PRIMARY KEY);"
    assert is_ancestor(bare, tasks["schema"]["commit"], models)
    # ... and the integration branch with the merged work and without the conflicting task's
    merged = git(bare, "rev-parse", f"refs/heads/{merge['branch']}")
    assert merged == merge["commit"]
    files = set(git(bare, "ls-tree", "-r", "--name-only", merged).splitlines())
    assert files == {"README.md", "app/__init__.py", "app/cli.py", "app/models.py", "db/schema.sql"}
    assert git(bare, "show", f"{merged}:README.md") == "# app\n\nStatus: a tiny user service"
    for name in merge["merged"]:
        assert is_ancestor(bare, tasks[name]["commit"], merged), name
    assert not is_ancestor(bare, tasks["docs-usage"]["commit"], merged)
    assert git(bare, "rev-parse", "main") == base

    # kubectl get prun: the printer columns
    table = cluster.kubectl("get", "prun", "-n", kit.namespace).stdout.splitlines()
    header, row = re.split(r"\s{2,}", table[0].strip()), re.split(r"\s{2,}", table[1].strip())
    columns = dict(zip(header, row, strict=False))
    assert (columns["NAME"], columns["PHASE"], columns["PROGRESS"]) == (RUN, "Conflicted", "5/5"), table
    assert (columns["RUNNING"], columns["FAILED"], columns["CONFLICTS"]) == ("0", "0", "1"), table

    # braid status and braid logs through the kubeconfig, as a user at their desk
    user_env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}

    def braid(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "braid", *args, "--cluster", "-n", kit.namespace],
                              capture_output=True, text=True, env=user_env, timeout=60, check=False)

    shown = braid("status", RUN, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["phase"] == "Conflicted"
    table = braid("status", RUN)
    assert table.returncode == 0 and f"run {RUN}: Conflicted, namespace {kit.namespace}" in table.stdout, table
    assert any(line.split()[:2] == ["schema", "Succeeded"] for line in table.stdout.splitlines()), table.stdout
    logs = braid("logs", RUN, "schema", "-f")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.startswith("==> schema, attempt 1 <==\n"), logs.stdout
    assert "agent finished: ok" in logs.stdout, logs.stdout
    missing = braid("status", "nope")
    assert missing.returncode == 1 and f"parallelruns {kit.namespace}/nope not found" in missing.stderr


VERIFY_RUN = "verified"
VERIFY_CHECK = ["python3", "-c", "import os, sys\n"
                "print('env:', ' '.join(sorted(os.environ)))\n"
                "print('token visible' if os.listdir('/var/run/secrets/kubernetes.io/serviceaccount') else 'no token')\n"
                "sys.exit(1 if os.path.exists('broken') else 0)\n"]


def test_merge_verify_on_a_real_node_bisects_and_pushes_only_a_verified_result(
    cluster: Cluster, node: dict[str, str], git_server: GitServer, kit: Kit, braid_operator: Operator
) -> None:
    bare = git_server.create_repo(f"{kit.namespace}-verify.git", {"README.md": README})
    names = ["alpha", "bravo", "charlie", "delta"]
    tasks = []
    for name in names:
        steps = [{"op": "write", "path": f"{name}.txt", "content": f"{name}\n"}]
        if name == "charlie":
            steps.append({"op": "write", "path": "broken", "content": "x\n"})
        tasks.append({"name": name, "prompt": f"do {name}", "agent": script(*steps),
                      **({"dependsOn": ["charlie"]} if name == "delta" else {})})
    kit.create_run(
        VERIFY_RUN, tasks,
        repo={"url": git_server.url(f"{kit.namespace}-verify.git"), "baseRef": "main"},
        agent={"backend": "script"}, maxParallel=2, retry={"limit": 0, "backoffSeconds": 0},
        resources=RESOURCES, taskTimeoutSeconds=120,
        merge={"verify": {"command": VERIFY_CHECK, "timeoutSeconds": 60}, "onVerifyFailure": "exclude"},
    )
    status = run_ended(cluster, kit, braid_operator, node, VERIFY_RUN)
    assert status["reason"] == "VerificationFailed", diagnose(cluster, kit, braid_operator, node)
    merge = status["merge"]
    verification = merge["verification"]
    assert verification["phase"] == "Passed", verification
    assert [c["task"] for c in verification["culprits"]] == ["charlie"]
    assert verification["excluded"] == ["charlie", "delta"]
    assert merge["merged"] == ["alpha", "bravo"]
    assert len(verification["runs"]) <= 4
    # the verify container saw no credentials and no token
    assert "no token" in verification["output"]
    assert "GIT_ASKPASS" not in verification["output"]
    merged = git(bare, "rev-parse", f"refs/heads/{merge['branch']}")
    assert merged == merge["commit"] == verification["commit"]
    files = set(git(bare, "ls-tree", "-r", "--name-only", merged).splitlines())
    assert files == {"README.md", "alpha.txt", "bravo.txt"}
    # the merge Job ran the command in its verify sidecar
    job = next(j for j in kit.jobs() if j.metadata.name == f"{VERIFY_RUN}-merge")
    [sidecar] = job.spec.template.spec.init_containers
    assert sidecar.name == "verify" and sidecar.restart_policy == "Always"


RESOLVE_RUN = "resolved"
RESOLVED_README = "# app\n\nStatus: a tiny user service; run python -m app.cli\n"


def test_a_conflict_is_resolved_by_a_resolver_pod_on_a_real_node_and_merged_in_the_second_round(
    cluster: Cluster, node: dict[str, str], git_server: GitServer, kit: Kit, braid_operator: Operator
) -> None:
    bare = git_server.create_repo(f"{kit.namespace}-resolve.git", {"README.md": README})
    docs = [t for t in TASKS if t["name"].startswith("docs-")]
    resolver_agent = script({"op": "require", "path": "README.md"},
                            {"op": "write", "path": "README.md", "content": RESOLVED_README})
    kit.create_run(
        RESOLVE_RUN, docs,
        repo={"url": git_server.url(f"{kit.namespace}-resolve.git"), "baseRef": "main"},
        agent={"backend": "script"}, maxParallel=2, retry={"limit": 0, "backoffSeconds": 0},
        resources=RESOURCES, taskTimeoutSeconds=120,
        merge={"resolve": [{"paths": ["README.md"], "strategy": "agent", "agent": resolver_agent}]},
    )
    status = run_ended(cluster, kit, braid_operator, node, RESOLVE_RUN)
    assert status["phase"] == "Succeeded", diagnose(cluster, kit, braid_operator, node)
    merge = status["merge"]
    assert merge["merged"] == ["docs-intro", "docs-usage"] and merge["round"] == 2
    resolver = status["resolvers"]["docs-usage"]
    assert resolver["phase"] == "Succeeded"
    (resolved,) = merge["resolved"]
    assert [(f["path"], f["resolution"]) for f in resolved["files"]] == [
        ("README.md", f"agent docs-usage.resolve at {resolver['commit'][:12]}")]
    # the resolver ran as an agent pod of its own, and each round had its Job
    assert f"{RESOLVE_RUN}-docs-usage.resolve-1" in kit.agent_pods()
    assert {j.metadata.name for j in kit.jobs()} >= {f"{RESOLVE_RUN}-merge", f"{RESOLVE_RUN}-merge-2"}
    merged = git(bare, "rev-parse", f"refs/heads/{merge['branch']}")
    assert merged == merge["commit"]
    assert git(bare, "show", f"{merged}:README.md") + "\n" == RESOLVED_README
    branch = f"braid/{RESOLVE_RUN}/resolve/docs-usage"
    assert git(bare, "rev-parse", f"refs/heads/{branch}") == resolver["commit"]
    reasons = {reason for _, reason, _ in kit.events(RESOLVE_RUN)}
    assert {"ResolverStarted", "ConflictResolved", "Succeeded"} <= reasons
