"""An AgentTask's next step from its pods: start an attempt, wait, retry, stop, or record the end. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from braid.api import AgentTask, AgentTaskStatus, Usage
from braid.api.status import ENDED_TASK_PHASES
from braid.kube import Event, pod_name
from braid.plan import RETRYABLE

from .clock import iso, parse
from .conditions import set_condition
from .observe import DISRUPTION_REASONS, PodView

# Failures worth another attempt (as in local mode); the rest would fail the same way again.
# How often to look at an old pod that is still shutting down before the next attempt starts.
WAIT_FOR_OLD_POD_SECONDS = 5.0


@dataclass(frozen=True)
class TaskPolicy:
    deadline_grace_seconds: int = 30
    max_interruptions: int = 5


@dataclass
class TaskPlan:
    status: AgentTaskStatus
    create_attempt: int | None = None
    """Create the pod of this attempt (before writing status)."""
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

    if status.phase in ENDED_TASK_PHASES:
        # a deadline or a skip: make sure nothing of it keeps running
        plan.delete_pods = [p.name for p in pods if not p.finished and not p.deleting]
        _conditions(plan, now, task)
        return plan

    latest = max(by_attempt, default=0)
    if latest > status.attempts:
        _adopt(plan, by_attempt[latest], now)

    current = by_attempt.get(status.attempts) if status.attempts else None
    if status.phase == "Running":
        if current is None:
            _interrupted(plan, "PodVanished", f"pod {status.pod} disappeared before it finished",
                         now, policy)
        elif current.finished:
            _attempt_ended(plan, task, current, now, policy)
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
                _fail(plan, "Timeout", f"attempt {status.attempts} ran longer than timeoutSeconds "
                      f"({spec.timeout_seconds}s); pod {current.name} stopped", now)
            else:
                plan.requeue_after = (deadline - now).total_seconds()

    if status.phase == "Pending":
        _maybe_start(plan, task, pods, now, policy)
    _conditions(plan, now, task)
    return plan


def _account_usage(plan: TaskPlan, pods: list[PodView]) -> None:
    """Add the usage of every finished attempt not yet counted, in attempt order.

    An attempt stopped for a suspension or a deadline reports after the task moved on,
    so accounting follows the pods rather than the task's phase.
    """
    status = plan.status
    for pod in sorted(pods, key=lambda p: p.attempt):
        if pod.attempt <= status.usage_attempts:
            continue
        if not pod.finished:
            break
        result = pod.result
        if result is not None and result.usage.total_tokens + result.usage.cost_usd > 0:
            status.usage = (status.usage or Usage()) + result.usage
            plan.usage.append(result.usage)
        if result is not None and result.commit:
            status.commit = result.commit
        status.usage_attempts = pod.attempt


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
    status.phase = "Running"
    status.attempts = attempt
    status.pod = name
    status.attempt_started_at = iso(now)
    status.started_at = status.started_at or iso(now)
    status.next_attempt_at = None
    status.reason = status.message = status.finished_at = None
    word = "started" if attempt == 1 else "resumed from its pushed branch"
    plan.events.append(Event("Normal", "Started", f"attempt {attempt} {word} in pod {name}"))
    plan.requeue_after = float(spec.timeout_seconds + policy.deadline_grace_seconds)


def _attempt_ended(plan: TaskPlan, task: AgentTask, pod: PodView, now: datetime, policy: TaskPolicy) -> None:
    spec, status = task.spec, plan.status
    result = pod.result
    if result is not None:
        status.changed_files = result.changed_files or status.changed_files
    n = pod.attempt
    if pod.reason == "DeadlineExceeded":
        # a deadline wins over retries
        _fail(plan, "Timeout", f"attempt {n} ran longer than timeoutSeconds ({spec.timeout_seconds}s)", now)
    elif result is not None and result.phase == "Succeeded":
        status.phase, status.reason = "Succeeded", None
        status.message = result.message
        status.finished_at = iso(now)
        plan.ended = True
        commit = (status.commit or "")[:12]
        plan.events.append(Event("Normal", "Succeeded", f"attempt {n} pushed {commit or 'no commit'} to {spec.branch}"))
    elif pod.disrupted or pod.reason in DISRUPTION_REASONS:
        why = pod.message or pod.reason or "disrupted"
        _interrupted(plan, pod.reason or "Disrupted", f"pod {pod.name}: {why}", now, policy)
    elif result is not None and result.phase == "Cancelled":
        _interrupted(plan, "Interrupted", f"pod {pod.name} was stopped from outside braid", now,
                     policy)
    elif result is not None:
        _failed_attempt(plan, task, n, result.reason or "AgentFailed", result.message or "the agent failed", now)
    else:
        term = pod.terminated
        code = term.exit_code if term else None
        if term is not None and term.reason == "OOMKilled":
            _failed_attempt(plan, task, n, "OOMKilled", f"pod {pod.name} ran out of memory; raise the memory limit",
                            now)
        elif code == 0:
            _failed_attempt(plan, task, n, "NoResult", f"pod {pod.name} ended without a result", now)
        else:
            detail = f"exited with code {code}" if code is not None else f"ended in phase {pod.phase}"
            _failed_attempt(plan, task, n, "Crashed", f"pod {pod.name} {detail} without a result", now)


def _failed_attempt(plan: TaskPlan, task: AgentTask, attempt: int, reason: str, message: str, now: datetime) -> None:
    status, retry = plan.status, task.spec.retry
    status.failures += 1
    if reason in RETRYABLE and status.failures <= retry.limit:
        delay = retry.backoff_seconds * 2 ** (status.failures - 1)
        status.phase, status.reason = "Pending", reason
        status.message = f"attempt {attempt} failed: {message}"
        status.next_attempt_at = iso(now + timedelta(seconds=delay))
        plan.events.append(Event(
            "Warning", "AttemptFailed",
            f"attempt {attempt} failed ({reason}: {message}); retry {status.failures} of {retry.limit} in {delay}s",
        ))
    else:
        why = "" if reason not in RETRYABLE else f" after {status.failures} failed attempts"
        _fail(plan, reason, f"{message}{why}", now)


def _interrupted(plan: TaskPlan, reason: str, message: str, now: datetime, policy: TaskPolicy) -> None:
    """The cluster, not the agent, ended the attempt: try again without counting it."""
    status = plan.status
    status.interruptions += 1
    if status.interruptions > policy.max_interruptions:
        _fail(plan, reason, f"{message}; interrupted {status.interruptions} times", now)
        return
    status.phase, status.reason = "Pending", reason
    status.message = f"{message}; a new attempt starts (not counted against retry.limit)"
    status.next_attempt_at = None
    plan.events.append(Event("Warning", "Interrupted", status.message))


def _fail(plan: TaskPlan, reason: str, message: str, now: datetime) -> None:
    status = plan.status
    status.phase, status.reason, status.message = "Failed", reason, message
    status.finished_at = iso(now)
    status.next_attempt_at = None
    plan.ended = True
    plan.events.append(Event("Warning", "Failed", f"{reason}: {message}"))


def _conditions(plan: TaskPlan, now: datetime, task: AgentTask) -> None:
    status = plan.status
    if status.phase == "Succeeded":
        state, reason = "True", "Succeeded"
    elif status.phase in ENDED_TASK_PHASES:
        state, reason = "False", status.reason or status.phase
    else:
        state, reason = "Unknown", status.reason or status.phase
    status.conditions = set_condition(
        status.conditions, "Succeeded", state, reason, status.message or "", now, task.metadata.generation
    )
