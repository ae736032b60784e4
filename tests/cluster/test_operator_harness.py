"""The operator under test and a stand-in for the kubelet, for tests against a real API server.

No kubelet runs in the test cluster, so pods stay Pending. Tests play the node: they
write what a kubelet would into a pod's status through the pods/status subresource
(phase, the container's terminated state and, as its termination message, the
runner's result JSON). The operator runs as `python -m braid operator` in a subprocess,
watching only the test's namespace.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from braid.api import Conflict, ConflictFile, MergeStatus, TaskResult, Usage
from kube_cluster import Cluster, wait_for

GROUP, VERSION = "braid.dev", "v1alpha1"
MERGE_PATCH = "application/merge-patch+json"
REPO = Path(__file__).resolve().parents[2]
# no scheduler of that name runs: the pods of the tests are never placed (should the
# cluster have a node) and cost the cluster's scheduler nothing
NO_SCHEDULER = "braid-test-unscheduled"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Operator:
    """`braid operator` as a subprocess; start, stop, kill and scrape it."""

    cluster: Cluster
    namespace: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "BRAID_METRICS_PORT": str(self.metrics_port),
            "BRAID_HEALTH_PORT": str(self.health_port),
            "BRAID_SCHEDULER_NAME": NO_SCHEDULER,
            "BRAID_RUNNER_IMAGE": "registry.invalid/braid/agent:test",
            "BRAID_WORKERS": "4",
            **self.env,
        }
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "braid", "operator", "--namespace", self.namespace],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_for(self._healthy, timeout=60, what=f"the operator to answer /healthz\n{self.log_tail()}")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no clean-up handler runs, as when a node dies under the operator."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def operator_env() -> dict[str, str]:
    """Extra environment of the operator; a test overrides this fixture to change settings."""
    return {"BRAID_DEADLINE_GRACE_SECONDS": "0"}


@pytest.fixture
def braid_operator(cluster: Cluster, crds: Any, namespace: str, tmp_path: Path,
                   operator_env: dict[str, str]) -> Iterator[Operator]:
    op = Operator(cluster, namespace, tmp_path / "operator.log", env=operator_env)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(f"--- operator log (tail) ---\n{op.log_tail(200)}")


@pytest.fixture
def kit(cluster: Cluster, namespace: str) -> Kit:
    return Kit(cluster.api, namespace)


class Kit:
    """Reads and writes of one test namespace, and the kubelet's part."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # -- braid's objects ----------------------------------------------------------------------

    def create_run(self, name: str, tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ParallelRun",
            "metadata": {"name": name},
            "spec": {"repo": {"url": "https://git.example.com/app.git"}, "agent": {"backend": "script"},
                     "tasks": tasks, **spec},
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "parallelruns", body)

    def run(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "parallelruns", name)

    def status(self, name: str) -> dict[str, Any]:
        return self.run(name).get("status") or {}

    def patch_run(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "parallelruns", name, patch,
                                                   _content_type=MERGE_PATCH)

    def delete_run(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "parallelruns", name,
                                                    propagation_policy="Background")

    def agenttasks(self) -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "agenttasks")["items"]
        return {i["spec"]["task"]: i for i in items}

    def agenttask(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "agenttasks", name)

    def task_phase(self, name: str) -> str | None:
        return (self.agenttask(name).get("status") or {}).get("phase")

    # -- pods and Jobs ---------------------------------------------------------------------------

    def agent_pods(self) -> dict[str, client.V1Pod]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector="app.kubernetes.io/component=agent")
        return {p.metadata.name: p for p in pods.items}

    def live_agent_pods(self) -> dict[str, client.V1Pod]:
        """Pods a kubelet would be running: not ended, not being deleted."""
        return {n: p for n, p in self.agent_pods().items()
                if p.status.phase not in ("Succeeded", "Failed") and not p.metadata.deletion_timestamp}

    def jobs(self) -> list[client.V1Job]:
        return self.batch.list_namespaced_job(self.namespace).items

    def events(self, name: str) -> list[tuple[str, str, str]]:
        items = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items
        return [(e.type, e.reason, e.message) for e in items]

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> list[tuple[str, str, str]]:
        """Events are posted after the status they describe: wait for them."""
        return wait_for(lambda: [e for e in self.events(name) if e[1] == reason], timeout=timeout,
                        what=f"a {reason} Event on {name}")

    # -- the kubelet's part ----------------------------------------------------------------------

    def terminate(self, pod: str, *, container: str, phase: str, exit_code: int, message: str | None = None,
                  reason: str | None = None, container_reason: str | None = None) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        terminated: dict[str, Any] = {
            "exitCode": exit_code, "reason": container_reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": now, "finishedAt": now,
        }
        if message is not None:
            terminated["message"] = message
        status: dict[str, Any] = {
            "phase": phase,
            "containerStatuses": [{
                "name": container, "ready": False, "restartCount": 0, "image": "registry.invalid/braid/agent:test",
                "imageID": "", "state": {"terminated": terminated},
            }],
        }
        if reason:
            status["reason"] = reason
            status["message"] = f"The pod was {reason.lower()}."
        self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": status}, _content_type=MERGE_PATCH)

    def finish(self, pod: str, run: str, task: str, *, cost: float = 0.5, tokens: int = 1000, ok: bool = True,
               reason: str | None = None, commit: str | None = None) -> None:
        """The agent ended: its result as the termination message, like `braid agent-run --result`."""
        result = TaskResult(
            run=run, task=task, phase="Succeeded" if ok else "Failed", branch=f"braid/{run}/tasks/{task}",
            commit=commit or f"{abs(hash((run, task))) % 16**12:012x}" + "0" * 28,
            usage=Usage(input_tokens=tokens, output_tokens=tokens // 2, cost_usd=cost),
            reason=None if ok else (reason or "AgentFailed"), message=None if ok else "the agent gave up",
        )
        self.terminate(pod, container="runner", phase="Succeeded" if ok else "Failed", exit_code=0 if ok else 1,
                       message=result.compact_json())

    def evict(self, pod: str) -> None:
        self.terminate(pod, container="runner", phase="Failed", exit_code=137, reason="Evicted")

    def merge_pod(self, run: str) -> client.V1Pod | None:
        pods = self.core.list_namespaced_pod(self.namespace,
                                             label_selector=f"batch.kubernetes.io/job-name={run}-merge").items
        return pods[0] if pods else None

    def finish_merge(self, run: str, report: MergeStatus) -> None:
        pod = wait_for(lambda: self.merge_pod(run), timeout=60, what="the Job controller to create the merge pod")
        self.terminate(pod.metadata.name, container="merge", phase="Succeeded", exit_code=0,
                       message=json.dumps(report.wire(), separators=(",", ":")))


def conflicted_report(run: str, merged: list[str], conflicting: str, collides_with: str) -> MergeStatus:
    return MergeStatus(
        phase="Conflicted", branch=f"braid/{run}/merged", merged=merged, not_merged=[conflicting],
        conflicts=[Conflict(task=conflicting, collides_with=[collides_with], files=[
            ConflictFile(path="app/api.py", kind="content", collides_with=[collides_with]),
            ConflictFile(path="README.md", kind="add/add", collides_with=[collides_with]),
        ])],
        conflict_count=2, commit="c0ffee" + "0" * 34,
    )


def task(name: str, *depends_on: str) -> dict[str, Any]:
    return {"name": name, "prompt": f"do {name}", "dependsOn": list(depends_on)}
