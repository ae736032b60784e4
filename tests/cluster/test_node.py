"""Pods that really run: a kubelet node (hack/node.sh) with containerd and runc, braid's
agent-runner image built from images/agent-runner/Dockerfile (hack/build-images.sh),
and a git server on the node network (gitserver.py).

When the node or the images cannot be had, these tests fail with the reason; they are
never skipped and never fall back to a simulated node.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kube_cluster
from braid.api import AgentTaskSpec
from gitserver import GitServer, git
from node_fixtures import agent_image, git_server, node

# the agent-runner image's user (images/agent-runner/Dockerfile)
IMAGE_UID = 10001

# Fixture setup counts against a test's timeout: on a cold machine the first test
# waits for the kubelet build and the image builds (minutes, once per machine).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]
__all__ = ["agent_image", "git_server", "node"]  # fixtures


# --- helpers ------------------------------------------------------------------------------


def restricted_pod(name: str, image: str, *, args: list[str] | None = None, command: list[str] | None = None,
                   env: dict[str, str] | None = None, memory: str = "512Mi",
                   writable: tuple[str, ...] = ("/workspace", "/cache", "/tmp")) -> dict[str, Any]:
    """A pod that passes the `restricted` Pod Security Standard, as braid's agent pods do."""
    volumes = [{"name": f"v{i}", "emptyDir": {}} for i, _ in enumerate(writable)]
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "resources": {"requests": {"cpu": "100m", "memory": memory}, "limits": {"cpu": "1", "memory": memory}},
        "volumeMounts": [{"name": f"v{i}", "mountPath": path} for i, path in enumerate(writable)],
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if args is not None:
        container["args"] = args
    if command is not None:
        container["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        },
    }


def pod_state(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    return core.read_namespaced_pod(name, namespace)


def describe(cluster: kube_cluster.Cluster, namespace: str, name: str) -> str:
    """What a failure message needs: the pod's description and its log."""
    text = cluster.kubectl("-n", namespace, "describe", "pod", name, check=False).stdout
    logs = cluster.kubectl("-n", namespace, "logs", name, "--tail=40", check=False)
    return f"{text}\n--- log ---\n{logs.stdout}{logs.stderr}"


def wait_pod_finished(cluster: kube_cluster.Cluster, namespace: str, name: str, timeout: float) -> client.V1Pod:
    core = client.CoreV1Api(cluster.api)
    try:
        return kube_cluster.wait_for(
            lambda: (p := pod_state(core, namespace, name)).status.phase in ("Succeeded", "Failed") and p,
            timeout=timeout, what=f"pod {name} to finish",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(cluster, namespace, name)}") from None


def terminated(pod: client.V1Pod) -> client.V1ContainerStateTerminated:
    statuses = pod.status.container_statuses or []
    assert statuses and statuses[0].state.terminated, f"no terminated container state in {pod.status}"
    return statuses[0].state.terminated


# --- tests ------------------------------------------------------------------------------


def test_node_is_ready_and_runs_on_containerd(cluster: kube_cluster.Cluster, node: dict[str, str]) -> None:
    n = client.CoreV1Api(cluster.api).read_node(node["node_name"])
    ready = {c.type: c.status for c in n.status.conditions}
    assert ready.get("Ready") == "True", n.status.conditions
    assert n.status.node_info.container_runtime_version.startswith("containerd://")
    # the kubelet is built from the same k8s.io/kubernetes version as the control plane
    assert n.status.node_info.kubelet_version == client.VersionApi(cluster.api).get_code().git_version
    assert {"type": "InternalIP", "address": node["node_ip"]} in [a.to_dict() for a in n.status.addresses]


def test_agent_pod_clones_commits_pushes_and_reports(cluster: kube_cluster.Cluster, namespace: str,
                                                     agent_image: str, git_server: GitServer) -> None:
    bare = git_server.create_repo(f"{namespace}.git", {"README.md": "# app\n", "app/__init__.py": ""})
    base = git(bare, "rev-parse", "main")
    spec = AgentTaskSpec.model_validate({
        "run": "onnode",
        "task": "hello",
        "prompt": "write a greeting",
        "repo": {"url": git_server.url(f"{namespace}.git"), "baseRef": "main"},
        "branch": "braid/onnode/tasks/hello",
        "agent": {"backend": "script", "script": {"steps": [
            {"op": "write", "path": "hello.txt", "content": "written in a pod\n"},
            {"op": "append", "path": "README.md", "content": "\nTouched by an agent pod.\n"},
        ]}},
        "timeoutSeconds": 120,
    })
    pod = restricted_pod("agent-hello", agent_image, args=["agent-run", "--result", "/dev/termination-log"],
                         env={"BRAID_TASK_SPEC": json.dumps(spec.wire())})
    client.CoreV1Api(cluster.api).create_namespaced_pod(namespace, pod)

    finished = wait_pod_finished(cluster, namespace, "agent-hello", timeout=180)
    state = terminated(finished)
    assert finished.status.phase == "Succeeded", describe(cluster, namespace, "agent-hello")
    assert state.exit_code == 0
    result = json.loads(state.message)
    assert result["phase"] == "Succeeded", result
    assert result["branch"] == "braid/onnode/tasks/hello"
    assert sorted(result["changedFiles"]) == ["README.md", "hello.txt"]

    # the branch really is on the remote, with the agent's work on top of main
    pushed = git(bare, "rev-parse", "refs/heads/braid/onnode/tasks/hello")
    assert pushed == result["commit"]
    assert git(bare, "rev-parse", f"{pushed}^") == base
    assert git(bare, "show", f"{pushed}:hello.txt") == "written in a pod"
    assert git(bare, "log", "-1", "--format=%B", pushed).rstrip().endswith("Braid-Task: hello")
    assert git(bare, "rev-parse", "main") == base


def test_job_runs_to_completion_and_its_log_is_readable(cluster: kube_cluster.Cluster, namespace: str,
                                                        agent_image: str) -> None:
    pod = restricted_pod("unused", agent_image, args=["--version"])
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "version"},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 120,
            "template": {"metadata": {"labels": {"app": "version"}}, "spec": pod["spec"]},
        },
    }
    client.BatchV1Api(cluster.api).create_namespaced_job(namespace, job)

    def complete() -> bool:
        status = client.BatchV1Api(cluster.api).read_namespaced_job("version", namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        assert conditions.get("Failed") != "True", f"the Job failed: {status}"
        return conditions.get("Complete") == "True" and status.succeeded == 1

    try:
        kube_cluster.wait_for(complete, timeout=120, what="Job version to complete")
    except AssertionError as exc:
        pods = cluster.kubectl("-n", namespace, "describe", "pods", "-l", "app=version", check=False).stdout
        raise AssertionError(f"{exc}\n{pods}") from None
    # the log comes from the kubelet through the apiserver, as the operator reads a merge report
    logs = cluster.kubectl("-n", namespace, "logs", "job/version", check=False)
    assert logs.returncode == 0, f"kubectl logs job/version: {logs.stderr}"
    assert logs.stdout.strip().startswith("braid "), logs.stdout


def test_the_image_runs_exactly_the_locked_versions(cluster: kube_cluster.Cluster, namespace: str,
                                                   agent_image: str) -> None:
    import tomllib

    from packaging.utils import canonicalize_name

    lock = tomllib.loads((Path(__file__).resolve().parents[2] / "uv.lock").read_text())
    locked = {canonicalize_name(p["name"]): p["version"] for p in lock["package"]}
    listing = ("import importlib.metadata as m, json\n"
               "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    pod = restricted_pod("versions", agent_image, command=["python3", "-c", listing])
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, pod)
    finished = wait_pod_finished(cluster, namespace, "versions", timeout=120)
    assert finished.status.phase == "Succeeded", describe(cluster, namespace, "versions")
    installed = {canonicalize_name(k): v for k, v in json.loads(core.read_namespaced_pod_log("versions", namespace)).items()}
    # pip and setuptools of the image's venv are not braid's dependencies
    installed = {k: v for k, v in installed.items() if k not in ("pip", "setuptools")}
    assert installed.pop("braid") == locked["braid"]
    assert {k: (v, locked.get(k)) for k, v in installed.items() if locked.get(k) != v} == {}
    for name in ("anthropic", "kopf", "kubernetes", "pydantic", "gitpython", "prometheus-client"):
        assert name in installed


def test_memory_limit_is_enforced_with_oomkilled(cluster: kube_cluster.Cluster, namespace: str,
                                                 agent_image: str) -> None:
    hog = "import time; chunks = []\nwhile True: chunks.append('x' * (16 << 20)); time.sleep(0.01)"
    pod = restricted_pod("hog", agent_image, command=["python3", "-c", hog], memory="64Mi")
    client.CoreV1Api(cluster.api).create_namespaced_pod(namespace, pod)

    finished = wait_pod_finished(cluster, namespace, "hog", timeout=120)
    state = terminated(finished)
    assert finished.status.phase == "Failed"
    assert state.reason == "OOMKilled", f"{state}\n{describe(cluster, namespace, 'hog')}"
    assert state.exit_code == 137


def test_pod_start_latency_with_a_cached_image(cluster: kube_cluster.Cluster, namespace: str,
                                               agent_image: str, record_property: Any) -> None:
    """Creation to Running of a pod whose image is already on the node (figures in docs/node.md)."""
    core = client.CoreV1Api(cluster.api)
    latencies = []
    for i in range(3):
        name = f"latency-{i}"
        pod = restricted_pod(name, agent_image, command=["python3", "-c", "import time; time.sleep(300)"])
        pod["spec"]["terminationGracePeriodSeconds"] = 0
        start = time.monotonic()
        core.create_namespaced_pod(namespace, pod)
        kube_cluster.wait_for(lambda name=name: pod_state(core, namespace, name).status.phase == "Running",
                              timeout=60, interval=0.05, what=f"pod {name} to be Running")
        latencies.append(time.monotonic() - start)
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    record_property("pod_start_seconds", [round(s, 2) for s in latencies])
    print(f"creation -> Running with a cached image: {', '.join(f'{s:.2f}s' for s in latencies)}")
    assert max(latencies) < 30, latencies
