"""The operator against a real API server: retries, evictions, lost pods, deadlines, suspend, deletion, restarts."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from braid.api import MergeStatus
from kube_cluster import wait_for
from test_operator_harness import Kit, Operator, braid_operator, kit, operator_env, task

pytestmark = pytest.mark.cluster
__all__ = ["braid_operator", "kit", "operator_env"]  # fixtures


def live(kit: Kit) -> set[str]:
    return set(kit.live_agent_pods())


def wait_pod(kit: Kit, name: str) -> None:
    wait_for(lambda: name in live(kit), timeout=60, what=f"pod {name}")


def status_of(kit: Kit, agenttask: str) -> dict:
    return kit.agenttask(agenttask).get("status") or {}


def test_a_failed_attempt_is_retried_in_a_new_pod_until_the_limit(kit: Kit, braid_operator: Operator) -> None:
    kit.create_run("retry", [task("only")], retry={"limit": 1, "backoffSeconds": 1})
    wait_pod(kit, "retry-only-1")
    kit.finish("retry-only-1", "retry", "only", ok=False, reason="AgentFailed", cost=0.1)

    wait_pod(kit, "retry-only-2")
    # the pod is created before the status that records it is written
    status = wait_for(lambda: (s := status_of(kit, "retry-only")).get("pod") == "retry-only-2" and s, timeout=30,
                      what="the status to record the second attempt")
    assert (status["phase"], status["attempts"], status["failures"], status["pod"]) == (
        "Running", 2, 1, "retry-only-2")
    kit.wait_event("retry-only", "AttemptFailed")

    kit.finish("retry-only-2", "retry", "only", ok=False, reason="AgentFailed", cost=0.1)
    run = wait_for(lambda: (s := kit.status("retry")).get("phase") == "Failed" and s, timeout=60,
                   what="the run to fail once the retries are spent")
    assert run["tasks"]["only"]["phase"] == "Failed"
    assert run["tasks"]["only"]["attempts"] == 2
    assert run["usage"]["costUSD"] == pytest.approx(0.2)
    assert run["merge"]["phase"] == "Skipped"
    assert "retry-only-3" not in kit.agent_pods()
    assert kit.jobs() == []
    assert kit.wait_event("retry", "TaskFailed")[0][0] == "Warning"


def pod_budget(kit: Kit, pod: str) -> dict:
    """The budget the runner in this pod is given (its BRAID_TASK_SPEC)."""
    env = {e.name: e.value for e in kit.core.read_namespaced_pod(pod, kit.namespace).spec.containers[0].env}
    return json.loads(env["BRAID_TASK_SPEC"]).get("budget") or {}


def test_retries_never_spend_more_than_the_budget_plus_one_response(kit: Kit, braid_operator: Operator) -> None:
    """Each attempt's pod gets the task's share less what its earlier attempts spent.

    The played agent spends $0.40 per attempt (one response) and fails, or stops with
    BudgetExceeded once that response went past its budget, as the anthropic agent does.
    """
    response = 0.4
    kit.create_run("spend", [task("only")], budget={"maxCostUSD": 1.0}, retry={"limit": 3, "backoffSeconds": 1})
    budgets = []
    for attempt in range(1, 5):
        pod = f"spend-only-{attempt}"
        wait_pod(kit, pod)
        budgets.append(pod_budget(kit, pod)["maxCostUSD"])
        over = response > budgets[-1] + 1e-9
        kit.finish(pod, "spend", "only", ok=False, reason="BudgetExceeded" if over else "AgentFailed", cost=response)
        if over:
            break
    run = wait_for(lambda: (s := kit.status("spend")).get("phase") == "Failed" and s, timeout=60,
                   what="the run to end")
    assert budgets == pytest.approx([1.0, 0.6, 0.2])
    assert run["tasks"]["only"]["attempts"] == 3 and run["tasks"]["only"]["reason"] == "BudgetExceeded"
    assert run["usage"]["costUSD"] == pytest.approx(1.2)
    assert run["usage"]["costUSD"] <= 1.0 + response
    assert "spend-only-4" not in kit.agent_pods()


def test_an_evicted_pod_is_retried_without_counting_against_the_limit(kit: Kit, braid_operator: Operator) -> None:
    kit.create_run("evict", [task("only")], retry={"limit": 0, "backoffSeconds": 60})
    wait_pod(kit, "evict-only-1")
    kit.evict("evict-only-1")

    wait_pod(kit, "evict-only-2")
    status = status_of(kit, "evict-only")
    assert (status["attempts"], status["failures"], status["interruptions"]) == (2, 0, 1)
    kit.wait_event("evict-only", "Interrupted")

    kit.finish("evict-only-2", "evict", "only")
    wait_for(lambda: kit.task_phase("evict-only") == "Succeeded", timeout=60, what="the task to succeed")


def test_a_vanished_pod_never_leaves_its_task_running(kit: Kit, braid_operator: Operator) -> None:
    kit.create_run("vanish", [task("only")], retry={"limit": 0})
    wait_pod(kit, "vanish-only-1")
    kit.core.delete_namespaced_pod("vanish-only-1", kit.namespace, grace_period_seconds=0)

    def recovered() -> dict | None:
        status = status_of(kit, "vanish-only")
        pod = status.get("pod")
        return status if status.get("phase") != "Running" or pod in kit.agent_pods() and pod != "vanish-only-1" \
            else None

    status = wait_for(recovered, timeout=60, what="the task to let go of the deleted pod")
    assert status["pod"] != "vanish-only-1"
    wait_pod(kit, "vanish-only-2")
    status = status_of(kit, "vanish-only")
    assert (status["phase"], status["failures"], status["interruptions"]) == ("Running", 0, 1)
    assert any("disappeared" in m for _, _, m in kit.wait_event("vanish-only", "Interrupted"))


def test_a_deadline_fails_the_task_and_wins_over_retries(kit: Kit, braid_operator: Operator) -> None:
    kit.create_run("slow", [task("stuck"), task("killed")], taskTimeoutSeconds=6, maxParallel=2,
                   retry={"limit": 2, "backoffSeconds": 1})
    wait_pod(kit, "slow-stuck-1")
    wait_pod(kit, "slow-killed-1")
    pod = kit.core.read_namespaced_pod("slow-stuck-1", kit.namespace)
    assert pod.spec.active_deadline_seconds == 6
    # the kubelet enforces activeDeadlineSeconds on one pod ...
    kit.terminate("slow-killed-1", container="runner", phase="Failed", exit_code=143, reason="DeadlineExceeded")
    # ... and the operator the deadline of the other, which no kubelet watches

    run = wait_for(lambda: (s := kit.status("slow")).get("phase") == "Failed" and s, timeout=60,
                   what="both tasks to time out and the run to fail")
    for name in ("stuck", "killed"):
        assert run["tasks"][name]["phase"] == "Failed"
        assert run["tasks"][name]["reason"] == "Timeout"
        assert run["tasks"][name]["attempts"] == 1
    wait_for(lambda: not live(kit), timeout=30, what="the stuck pod to be stopped")
    assert set(kit.agent_pods()) <= {"slow-stuck-1", "slow-killed-1"}


def test_suspend_stops_running_pods_and_starts_nothing_until_resumed(kit: Kit, braid_operator: Operator) -> None:
    kit.create_run("pause", [task("a"), task("b"), task("c")], maxParallel=2)
    wait_pod(kit, "pause-a-1")
    wait_pod(kit, "pause-b-1")

    kit.patch_run("pause", {"spec": {"suspend": True}})

    def suspended() -> bool:
        tasks = kit.agenttasks()
        return (kit.status("pause").get("phase") == "Suspended"
                and all(t["spec"]["suspend"] for t in tasks.values())
                and all((t.get("status") or {}).get("phase") == "Pending" for t in tasks.values())
                and not live(kit))

    wait_for(suspended, timeout=60, what="the run to suspend and its pods to stop")
    kit.wait_event("pause", "Suspended")
    kit.wait_event("pause-a", "Suspended")
    assert not live(kit)

    kit.patch_run("pause", {"spec": {"suspend": False}})
    wait_pod(kit, "pause-a-2")
    wait_pod(kit, "pause-b-2")
    assert live(kit) == {"pause-a-2", "pause-b-2"}
    kit.wait_event("pause", "Resumed")
    for name in ("a", "b"):
        kit.finish(f"pause-{name}-2", "pause", name)
    wait_pod(kit, "pause-c-1")
    kit.finish("pause-c-1", "pause", "c")
    kit.finish_merge("pause", MergeStatus(phase="Succeeded", branch="braid/pause/merged", merged=["a", "b", "c"]))
    wait_for(lambda: kit.status("pause").get("phase") == "Succeeded", timeout=60, what="the resumed run to succeed")


def test_deleting_a_run_collects_its_tasks_pods_and_merge_job(kit: Kit, braid_operator: Operator) -> None:
    kit.create_run("gone", [task("a"), task("b")], maxParallel=1)
    wait_pod(kit, "gone-a-1")
    kit.finish("gone-a-1", "gone", "a")
    wait_pod(kit, "gone-b-1")
    kit.finish("gone-b-1", "gone", "b")
    wait_for(lambda: kit.jobs(), timeout=60, what="the merge Job")
    wait_for(lambda: kit.merge_pod("gone"), timeout=60, what="the merge pod")

    kit.delete_run("gone")

    def collected() -> bool:
        pods = kit.core.list_namespaced_pod(kit.namespace).items
        return not kit.agenttasks() and not pods and not kit.jobs()

    wait_for(collected, timeout=90, what="garbage collection of AgentTasks, pods and the Job")
    with pytest.raises(client.ApiException) as gone:
        kit.run("gone")
    assert gone.value.status == 404


def test_a_killed_operator_restarts_where_it_was_and_creates_nothing_twice(
    kit: Kit, braid_operator: Operator
) -> None:
    kit.create_run("phoenix", [task("a"), task("b"), task("c", "a"), task("d", "b")], maxParallel=2)
    wait_pod(kit, "phoenix-a-1")
    wait_pod(kit, "phoenix-b-1")

    braid_operator.kill()
    # the world moves on while no operator watches
    kit.finish("phoenix-a-1", "phoenix", "a")
    kit.finish("phoenix-b-1", "phoenix", "b")
    braid_operator.start()

    wait_pod(kit, "phoenix-c-1")
    wait_pod(kit, "phoenix-d-1")
    braid_operator.kill()
    braid_operator.start()
    kit.finish("phoenix-c-1", "phoenix", "c")
    kit.finish("phoenix-d-1", "phoenix", "d")
    wait_for(lambda: kit.jobs(), timeout=60, what="the merge Job")
    braid_operator.kill()
    braid_operator.start()
    kit.finish_merge("phoenix", MergeStatus(phase="Succeeded", branch="braid/phoenix/merged",
                                            merged=["a", "b", "c", "d"]))
    status = wait_for(lambda: (s := kit.status("phoenix")).get("phase") == "Succeeded" and s, timeout=60,
                      what="the run to succeed across restarts")

    assert sorted(kit.agent_pods()) == ["phoenix-a-1", "phoenix-b-1", "phoenix-c-1", "phoenix-d-1"]
    assert [j.metadata.name for j in kit.jobs()] == ["phoenix-merge"]
    assert len(kit.agenttasks()) == 4
    assert all(t["attempts"] == 1 for t in status["tasks"].values())
    assert status["usage"]["costUSD"] == pytest.approx(2.0)
