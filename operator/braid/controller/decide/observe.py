"""What the operator reads from pods and Jobs, reduced to the facts its decisions use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from braid.api import AgentTask, AgentTaskStatus, MergeStatus, TaskResult
from braid.api.status import ENDED_TASK_PHASES
from braid.kube import labels
from braid.kube.pod import RUNNER_CONTAINER
from braid.plan import Skip, TaskView
from braid.plan.clock import parse

# Pod status reasons of an attempt lost to the cluster rather than to the agent.
DISRUPTION_REASONS = frozenset({
    "Evicted", "Preempting", "NodeLost", "NodeShutdown", "Shutdown", "Terminated", "UnexpectedAdmissionError",
    "NodeAffinity", "OutOfcpu", "OutOfmemory", "OutOfpods",
})


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class PodView:
    name: str
    attempt: int
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    created: datetime | None = None
    deleting: bool = False
    disrupted: bool = False
    terminated: Terminated | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or self.terminated is not None

    @property
    def result(self) -> TaskResult | None:
        """The runner's report from the termination message, when there is a readable one."""
        text = self.terminated.message if self.terminated else None
        if not text:
            return None
        try:
            return TaskResult.model_validate_json(text)
        except (ValidationError, ValueError):
            return None

    @classmethod
    def from_manifest(cls, pod: dict[str, Any], container: str = RUNNER_CONTAINER) -> PodView:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        try:
            attempt = int((meta.get("labels") or {}).get(labels.ATTEMPT, "0"))
        except ValueError:
            attempt = 0
        terminated = None
        for cs in status.get("containerStatuses") or []:
            state = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == container and state:
                terminated = Terminated(int(state.get("exitCode", 0)), state.get("reason"), state.get("message"))
        disrupted = any(
            c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        return cls(
            name=meta.get("name", ""),
            attempt=attempt,
            phase=status.get("phase") or "Pending",
            reason=status.get("reason"),
            message=status.get("message"),
            created=parse(meta.get("creationTimestamp")),
            deleting=bool(meta.get("deletionTimestamp")),
            disrupted=disrupted,
            terminated=terminated,
        )


@dataclass(frozen=True)
class MergeView:
    """The merge Job as far as the run cares: does it exist, has it ended, what did it report."""

    exists: bool = False
    outcome: str | None = None
    """None while it runs, else Succeeded or Failed."""
    report: MergeStatus | None = None
    message: str | None = None


def job_outcome(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    return None


def job_failure_message(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget") and cond.get("status") == "True":
            return f"{cond.get('reason') or 'Failed'}: {cond.get('message') or 'the merge Job failed'}"
    return None


def parse_merge_report(text: str | None) -> MergeStatus | None:
    """The last JSON line of `text` as a merge report (a termination message, a ConfigMap value or a log)."""
    if not text:
        return None
    try:
        return MergeStatus.model_validate_json(text.strip())
    except (ValidationError, ValueError):
        pass
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return MergeStatus.model_validate_json(line)
            except (ValidationError, ValueError):
                return None
    return None


def task_view(child: AgentTask) -> TaskView:
    """An AgentTask as plan.step sees a task: admitted while it is not held, not skipped and not ended."""
    status = child.status or AgentTaskStatus(branch=child.spec.branch)
    skip = Skip(child.spec.skip.reason, child.spec.skip.message) if child.spec.skip is not None else None
    admitted = not child.spec.suspend and skip is None and status.phase not in ENDED_TASK_PHASES
    return TaskView(status=status, admitted=admitted, share=child.spec.budget, skip=skip)
