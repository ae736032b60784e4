"""An AgentTask's next step from its pods: start an attempt, wait, retry, stop, or record the end. Pure.

What an ended attempt means (success, retry and when, failure, interruption) is decided by
plan.attempt for both launchers; this module reads pods and deadlines, the cluster's part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from braid.api import AgentTask, AgentTaskSpec, AgentTaskStatus, Usage
from braid.api.status import ENDED_TASK_PHASES
from braid.kube import pod_name
from braid.plan import (
    AttemptEnd,
    Event,
    TaskPolicy,
    add_usage,
    attempt_budget,
    attempt_ended,
    attempt_spec,
    end_without_attempt,
    fail,
    start_attempt,
    task_conditions,
)
from braid.plan.attempt import interrupted
from braid.plan.clock import iso, parse

from .observe import DISRUPTION_REASONS, PodView

# How often to look at an old pod that is still shutting down before the next attempt starts.
WAIT_FOR_OLD_POD_SECONDS = 5.0


@dataclass
class TaskPlan:
    status: AgentTaskStatus
    create_attempt: int | None = None
    """Create the pod of this attempt (before writing status)."""
    attempt_spec: AgentTaskSpec | None = None
    """The spec that attempt's pod runs (plan.attempt_spec): what it may spend (the task's share less
    what its earlier attempts spent) and the commit braid last pushed to the task branch."""
    delete_pods: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    usage: list[Usage] = field(default_factory=list)
    """Usage of attempts accounted for in this step (for the cost counters)."""
    ended: bool = False
    """The task reached Succeeded or Failed in this step."""


def decide_task(task: AgentTask, pods: list[PodView], now: datetime, policy: TaskPolicy) -> TaskPlan:
    spec = task.spec
    status = (task.status or AgentTaskStatus()).model_copy(deep=True)
    status.branch = spec.branch
    status.observed_generation = task.metadata.generation
    plan = TaskPlan(status=status)
    by_attempt = {p.attempt: p for p in pods}
    _account_usage(plan, pods)

    if status.phase not in ENDED_TASK_PHASES and spec.skip is not None:
        end_without_attempt(status, "Skipped", spec.skip.reason, spec.skip.message, now)
    if status.phase in ENDED_TASK_PHASES:
        # a deadline or a skip: make sure nothing of it keeps running
        plan.delete_pods = [p.name for p in pods if not p.finished and not p.deleting]
        task_conditions(status, now, task.metadata.generation)
        return plan

    latest = max(by_attempt, default=0)
    if latest > status.attempts:
        _adopt(plan, by_attempt[latest], now)

    current = by_attempt.get(status.attempts) if status.attempts else None
    if spec.cancel:
        _cancel(plan, spec, current, now, policy)
        task_conditions(status, now, task.metadata.generation)
        return plan
    if status.phase == "Running":
        if current is None:
            plan.events += interrupted(status, "PodVanished", f"pod {status.pod} disappeared before it finished",
                                       now, policy)
        elif current.finished:
            plan.events += attempt_ended(status, spec.retry, spec.timeout_seconds, _attempt_end(current), now, policy)
        elif spec.suspend:
            if not current.deleting:
                plan.delete_pods.append(current.name)
            status.phase, status.reason = "Pending", "Suspended"
            status.message = f"pod {current.name} stopped while the run is suspended; work so far is pushed"
            plan.events.append(Event("Normal", "Suspended", status.message))
        else:
            started = parse(status.attempt_started_at) or current.created or now
            deadline = started + timedelta(seconds=spec.timeout_seconds + policy.deadline_grace_seconds)
            if now >= deadline:
                if not current.deleting:
                    plan.delete_pods.append(current.name)
                plan.events.append(fail(status, "Timeout", f"attempt {status.attempts} ran longer than "
                                        f"timeoutSeconds ({spec.timeout_seconds}s); pod {current.name} stopped", now))
            else:
                plan.requeue_after = (deadline - now).total_seconds()
    plan.ended = status.phase in ("Succeeded", "Failed")

    if status.phase == "Pending":
        _maybe_start(plan, task, pods, now, policy)
    task_conditions(status, now, task.metadata.generation)
    return plan


def _cancel(plan: TaskPlan, spec: AgentTaskSpec, current: PodView | None, now: datetime, policy: TaskPolicy) -> None:
    """The run was cancelled: stop the pod (its runner pushes what the agent wrote), then end Cancelled,
    unless the attempt had finished and succeeded first."""
    status = plan.status
    if status.phase == "Running" and current is not None and not current.finished:
        if not current.deleting:
            plan.delete_pods.append(current.name)
            status.message = f"the run was cancelled: stopping pod {current.name}; its work is pushed"
            plan.events.append(Event("Normal", "Cancelling", status.message))
        return
    if status.phase == "Running" and current is not None:
        plan.events += attempt_ended(status, spec.retry, spec.timeout_seconds, _attempt_end(current), now, policy)
    if status.phase != "Succeeded":
        end_without_attempt(status, "Cancelled", "Cancelled", "the run was cancelled", now)
        plan.events.append(Event("Normal", "Cancelled", f"task {spec.task} cancelled with its run"))
    plan.ended = True


def _attempt_end(pod: PodView) -> AttemptEnd:
    """A finished pod as plan.attempt reads an attempt's end."""
    source = f"pod {pod.name}"
    if pod.reason == "DeadlineExceeded":
        return AttemptEnd(pod.attempt, pod.result, timed_out=True, source=source)
    result = pod.result
    if (result is None or result.phase != "Succeeded") and (pod.disrupted or pod.reason in DISRUPTION_REASONS):
        why = pod.message or pod.reason or "disrupted"
        return AttemptEnd(pod.attempt, result, interrupted=(pod.reason or "Disrupted", f"{source}: {why}"),
                          source=source)
    if result is not None:
        return AttemptEnd(pod.attempt, result, source=source)
    term = pod.terminated
    code = term.exit_code if term else None
    if term is not None and term.reason == "OOMKilled":
        failure = ("OOMKilled", f"{source} ran out of memory; raise the memory limit")
    elif code == 0:
        failure = ("NoResult", f"{source} ended without a result")
    else:
        detail = f"exited with code {code}" if code is not None else f"ended in phase {pod.phase}"
        failure = ("Crashed", f"{source} {detail} without a result")
    return AttemptEnd(pod.attempt, None, failure=failure, source=source)


def _account_usage(plan: TaskPlan, pods: list[PodView]) -> None:
    """Add the usage of every finished attempt not yet counted, in attempt order.

    An attempt stopped for a suspension or a deadline reports after the task moved on,
    so accounting follows the pods rather than the task's phase.
    """
    for pod in sorted(pods, key=lambda p: p.attempt):
        if pod.attempt <= plan.status.usage_attempts:
            continue
        if not pod.finished:
            break
        added = add_usage(plan.status, pod.attempt, pod.result)
        if added is not None:
            plan.usage.append(added)


def _adopt(plan: TaskPlan, pod: PodView, now: datetime) -> None:
    """A pod created before its attempt was recorded (the operator stopped in between)."""
    status = plan.status
    status.attempts = pod.attempt
    status.pod = pod.name
    status.phase = "Running"
    status.attempt_started_at = iso(pod.created or now)
    status.started_at = status.started_at or status.attempt_started_at
    status.next_attempt_at = None
    status.reason = status.message = status.finished_at = None


def _maybe_start(plan: TaskPlan, task: AgentTask, pods: list[PodView], now: datetime, policy: TaskPolicy) -> None:
    spec, status = task.spec, plan.status
    if spec.suspend:
        if status.attempts == 0:
            status.reason, status.message = "Waiting", f"waiting for ParallelRun {spec.run} to start it"
        elif status.reason != "Suspended" and status.next_attempt_at is None:
            status.reason = "Suspended"
        return
    if any(not p.finished for p in pods):
        # never two attempts at once: both would push the same branch
        plan.requeue_after = WAIT_FOR_OLD_POD_SECONDS
        return
    not_before = parse(status.next_attempt_at)
    if not_before is not None and now < not_before:
        plan.requeue_after = (not_before - now).total_seconds()
        return
    attempt = status.attempts + 1
    name = pod_name(spec.run, spec.task, attempt)
    plan.create_attempt = attempt
    plan.attempt_spec = attempt_spec(spec, status, attempt_budget(spec.budget, status.usage))
    plan.events.append(start_attempt(status, attempt, now, pod=name))
    plan.requeue_after = float(spec.timeout_seconds + policy.deadline_grace_seconds)
