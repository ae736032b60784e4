"""One task's attempts: start one, record how it ended, retry or end the task. Pure.

Both launchers keep an AgentTaskStatus per task and change it only through these
functions, so a task's phase, reason, message, counters and conditions mean the same
whether its attempt was a pod or a local process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from braid.api import AgentTaskStatus, Budget, RetryPolicy, TaskResult, Usage
from braid.api.status import ENDED_TASK_PHASES

from .clock import iso
from .conditions import set_condition
from .events import Event

# Failure reasons worth another attempt; the others would fail the same way again
# (a timeout, a spent budget, a refusal, conflicting dependencies, bad settings, a task
# branch braid did not write: BranchExists).
RETRYABLE = frozenset({"AgentFailed", "PushFailed", "GitFailed", "RepositoryUnreachable", "Crashed"})


@dataclass(frozen=True)
class TaskPolicy:
    deadline_grace_seconds: int = 30
    """How long past timeoutSeconds an attempt may take to commit, push and report before it is stopped."""
    max_interruptions: int = 5
    """Attempts lost to the launcher (eviction, a vanished pod) before the task fails."""


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt ended, as its launcher saw it."""

    attempt: int
    result: TaskResult | None = None
    """The runner's report, when it left a readable one."""
    timed_out: bool = False
    """Stopped at its deadline: fails the task whatever the retries."""
    interrupted: tuple[str, str] | None = None
    """(reason, message) when the launcher, not the agent, ended it (eviction, node loss): tried again, not counted."""
    failure: tuple[str, str] | None = None
    """(reason, message) when there is no result: Crashed, OOMKilled, NoResult."""
    source: str = ""
    """The pod or process of the attempt, for messages."""


def retry_delay(retry: RetryPolicy, failures: int, reason: str) -> int | None:
    """Seconds before the next attempt after `failures` counted failures, or None: the task fails."""
    if reason not in RETRYABLE or failures > retry.limit:
        return None
    return retry.backoff_seconds * 2 ** (failures - 1)


def attempt_budget(share: Budget | None, used: Usage | None) -> Budget | None:
    """What the next attempt may spend: the task's share less what its earlier attempts spent.

    Never zero: the API rejects a zero budget, and an attempt with nothing left stops at
    its first turn anyway.
    """
    if share is None:
        return None
    used = used or Usage()
    cost = tokens = None
    if share.max_cost_usd is not None:
        cost = max(share.max_cost_usd - used.cost_usd, 1e-6)
    if share.max_tokens is not None:
        tokens = max(share.max_tokens - (used.input_tokens + used.output_tokens), 1)
    return Budget(max_cost_usd=cost, max_tokens=tokens)


def add_usage(status: AgentTaskStatus, attempt: int, result: TaskResult | None) -> Usage | None:
    """Count an ended attempt's usage, commit and transcript once (attempts are counted in order); the usage added.

    The commit and the transcript are braid's record of what it pushed: the next attempt may
    resume (and replace) the task branch and the transcript ref only while they hold them.
    """
    if attempt <= status.usage_attempts:
        return None
    status.usage_attempts = attempt
    if result is None:
        return None
    if result.commit:
        status.commit = result.commit
    if result.transcript:
        status.transcript = result.transcript
    if result.usage.total_tokens + result.usage.cost_usd <= 0:
        return None
    status.usage = (status.usage or Usage()) + result.usage
    return result.usage


def start_attempt(status: AgentTaskStatus, attempt: int, now: datetime, pod: str | None = None) -> Event:
    status.phase = "Running"
    status.attempts = attempt
    status.pod = pod
    status.attempt_started_at = iso(now)
    status.started_at = status.started_at or iso(now)
    status.next_attempt_at = None
    status.reason = status.message = status.finished_at = None
    word = "started" if attempt == 1 else "resumed from its pushed branch"
    return Event("Normal", "Started", f"attempt {attempt} {word}" + (f" in pod {pod}" if pod else ""))


def attempt_ended(status: AgentTaskStatus, retry: RetryPolicy, timeout_seconds: int, end: AttemptEnd,
                  now: datetime, policy: TaskPolicy) -> list[Event]:
    """Record how attempt `end.attempt` ended: the task succeeds, fails, or waits for its next attempt."""
    result, n = end.result, end.attempt
    if result is not None and result.changed_files:
        status.changed_files = result.changed_files
    if end.timed_out:
        return [fail(status, "Timeout", f"attempt {n} ran longer than timeoutSeconds ({timeout_seconds}s)", now)]
    if result is not None and result.phase == "Succeeded":
        status.phase, status.reason, status.message = "Succeeded", None, result.message
        status.finished_at = iso(now)
        status.next_attempt_at = None
        commit = (status.commit or "")[:12]
        return [Event("Normal", "Succeeded", f"attempt {n} pushed {commit or 'no commit'} to {status.branch}")]
    if end.interrupted is not None:
        return interrupted(status, *end.interrupted, now, policy)
    if result is not None and result.phase == "Cancelled":
        return interrupted(status, "Interrupted", f"{end.source} was stopped from outside braid", now, policy)
    if result is not None:
        reason, message = result.reason or "AgentFailed", result.message or "the agent failed"
    else:
        reason, message = end.failure or ("Crashed", f"{end.source} ended without a result")
    return failed_attempt(status, retry, n, reason, message, now)


def failed_attempt(status: AgentTaskStatus, retry: RetryPolicy, attempt: int, reason: str, message: str,
                   now: datetime) -> list[Event]:
    status.failures += 1
    delay = retry_delay(retry, status.failures, reason)
    if delay is None:
        why = "" if reason not in RETRYABLE else f" after {status.failures} failed attempts"
        return [fail(status, reason, f"{message}{why}", now)]
    status.phase, status.reason = "Pending", reason
    status.message = f"attempt {attempt} failed: {message}"
    status.next_attempt_at = iso(now + timedelta(seconds=delay))
    status.finished_at = None
    return [Event("Warning", "AttemptFailed",
                  f"attempt {attempt} failed ({reason}: {message}); retry {status.failures} of {retry.limit} in {delay}s")]


def interrupted(status: AgentTaskStatus, reason: str, message: str, now: datetime, policy: TaskPolicy) -> list[Event]:
    """The launcher, not the agent, ended the attempt: try again at once without counting it."""
    status.interruptions += 1
    if status.interruptions > policy.max_interruptions:
        return [fail(status, reason, f"{message}; interrupted {status.interruptions} times", now)]
    status.phase, status.reason = "Pending", reason
    status.message = f"{message}; a new attempt starts (not counted against retry.limit)"
    status.next_attempt_at = None
    return [Event("Warning", "Interrupted", status.message)]


def fail(status: AgentTaskStatus, reason: str, message: str, now: datetime) -> Event:
    status.phase, status.reason, status.message = "Failed", reason, message
    status.finished_at = iso(now)
    status.next_attempt_at = None
    return Event("Warning", "Failed", f"{reason}: {message}")


def end_without_attempt(status: AgentTaskStatus, phase: str, reason: str, message: str, now: datetime) -> None:
    """A task that ends without (another) attempt of its own: Skipped, or Cancelled with its run."""
    status.phase, status.reason, status.message = phase, reason, message  # type: ignore[assignment]
    status.finished_at = iso(now)
    status.next_attempt_at = None


def task_conditions(status: AgentTaskStatus, now: datetime, generation: int | None) -> None:
    if status.phase == "Succeeded":
        state, reason = "True", "Succeeded"
    elif status.phase in ENDED_TASK_PHASES:
        state, reason = "False", status.reason or status.phase
    else:
        state, reason = "Unknown", status.reason or status.phase
    status.conditions = set_condition(
        status.conditions, "Succeeded", state, reason, status.message or "", now, generation
    )
