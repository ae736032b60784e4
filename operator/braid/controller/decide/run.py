"""A ParallelRun's next step from its AgentTasks and merge Job. Pure.

Create the AgentTasks that are missing, admit the tasks whose turn it is (plan.decide),
skip what can never run, suspend and resume, start the merge when every task has
ended, and summarise it all in the run's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from braid.api import AgentTask, AgentTaskStatus, Budget, MergeStatus, ParallelRun, ParallelRunStatus, TaskStatus
from braid.api.status import ENDED_TASK_PHASES
from braid.kube import Event, agent_task, merge_job, merge_report_configmap, merge_request, task_spec
from braid.plan import PlanError, Spend, decide, exhausted, nodes_of, spent, task_share, validate
from braid.settings import Settings

from .clock import iso
from .conditions import condition, set_condition
from .observe import MergeView

FINAL_RUN_PHASES = frozenset({"Succeeded", "Conflicted", "Failed", "Cancelled"})
SUMMARY_MESSAGE_LIMIT = 256
# a not-yet-started AgentTask follows edits of its task; these two fields are the run's to set
RUN_OWNED_FIELDS = ("suspend", "budget")


@dataclass(frozen=True)
class RunObservation:
    run: ParallelRun
    tasks: dict[str, AgentTask]
    """The run's AgentTasks by task name."""
    strays: list[str] = field(default_factory=list)
    """AgentTasks of the run whose task is no longer in the spec."""
    merge: MergeView = field(default_factory=MergeView)


@dataclass
class RunPlan:
    status: ParallelRunStatus
    create: list[dict[str, Any]] = field(default_factory=list)
    admit: dict[str, dict[str, Any]] = field(default_factory=dict)
    """AgentTask name -> merge patch that lets it start."""
    suspend: list[str] = field(default_factory=list)
    respec: dict[str, dict[str, Any]] = field(default_factory=dict)
    """AgentTask name -> merge patch bringing a not-yet-started task up to date with the run's spec."""
    skip: dict[str, AgentTaskStatus] = field(default_factory=dict)
    """AgentTask name -> its status as Skipped."""
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finished: bool = False
    """The run reached its final phase in this step."""


def decide_run(obs: RunObservation, settings: Settings, now: datetime) -> RunPlan:
    run = obs.run
    generation = run.metadata.generation
    old = run.status or ParallelRunStatus()
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    try:
        validate(nodes_of(run.spec.tasks))
    except PlanError as exc:
        return invalid_run(old, generation, exc.reason, str(exc), now)
    status.conditions = set_condition(
        status.conditions, "Valid", "True", "Valid", f"{len(run.spec.tasks)} tasks", now, generation
    )
    was_valid = condition(old.conditions, "Valid")
    if was_valid is not None and was_valid.status == "False":
        # the spec was fixed: check it afresh
        status.reason = status.message = status.finished_at = None
        status.phase = "Pending"
    plan = RunPlan(status=status)
    final = status.phase in FINAL_RUN_PHASES and status.finished_at is not None

    phases, admitted = _phases(obs)
    if final:
        # a finished run stays as it ended; its summary still follows late reports (usage of a stopped pod)
        _summarise(plan, obs, phases, admitted, set(), old)
        return plan

    for task in run.spec.tasks:
        if task.name not in obs.tasks:
            plan.create.append(agent_task(run, task))
    if plan.create:
        names = ", ".join(m["spec"]["task"] for m in plan.create)
        plan.events.append(Event("Normal", "TasksCreated", f"created {len(plan.create)} AgentTasks: {names}"))
    plan.delete = list(obs.strays)
    for name in obs.strays:
        plan.events.append(Event("Normal", "TaskRemoved", f"AgentTask {name} deleted: its task left the spec"))
    _respec(plan, obs, phases)

    ended_usage = [t.status.usage for t in obs.tasks.values()
                   if t.status and t.status.usage and t.status.phase in ENDED_TASK_PHASES]
    used = spent(ended_usage)
    over_budget = exhausted(run.spec.budget, used)
    decision = decide(
        nodes_of(run.spec.tasks), phases, run.spec.max_parallel,
        budget_exhausted=over_budget, suspended=run.spec.suspend,
    )

    for name, skip in decision.skip.items():
        phases[name] = "Skipped"
        child = obs.tasks.get(name)
        if child is not None:
            plan.skip[child.metadata.name] = _skipped(child, skip.reason, skip.message, now)
    if any(s.reason == "BudgetExceeded" for s in decision.skip.values()):
        plan.events.append(Event(
            "Warning", "BudgetExceeded",
            f"the budget is spent (${used.cost_usd:g}, {used.tokens} tokens); tasks not started are skipped",
        ))

    started = _admit(plan, obs, decision.start, phases, admitted, used)
    if run.spec.suspend:
        plan.suspend = [obs.tasks[name].metadata.name for name in sorted(admitted) if phases[name] == "Running"]

    all_ended = decision.all_ended and all(t.name in obs.tasks for t in run.spec.tasks)
    if all_ended:
        _merge(plan, obs, phases, settings, now)

    _summarise(plan, obs, phases, admitted | set(started), set(started), old)
    _phase(plan, obs, old, now)
    return plan


def invalid_run(old: ParallelRunStatus, generation: int | None, reason: str, message: str, now: datetime) -> RunPlan:
    """A spec that can never run: a Failed condition and an Event, nothing created."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    status.phase = "Failed"
    status.reason, status.message = reason, message
    status.conditions = set_condition(status.conditions, "Valid", "False", reason, message, now, generation)
    status.conditions = set_condition(status.conditions, "Succeeded", "False", reason, message, now, generation)
    plan = RunPlan(status=status)
    before = condition(old.conditions, "Valid")
    if before is None or before.status != "False" or before.message != message:
        plan.events.append(Event("Warning", reason, message))
    return plan


def _phases(obs: RunObservation) -> tuple[dict[str, str], set[str]]:
    """Each task's phase as plan.decide sees it: an admitted task holds a slot until it ends."""
    phases: dict[str, str] = {}
    admitted: set[str] = set()
    for task in obs.run.spec.tasks:
        child = obs.tasks.get(task.name)
        child_phase = child.status.phase if child is not None and child.status else "Pending"
        if child is None:
            phases[task.name] = "Pending"
        elif child_phase in ENDED_TASK_PHASES:
            phases[task.name] = child_phase
        elif not child.spec.suspend:
            phases[task.name] = "Running"
            admitted.add(task.name)
        else:
            phases[task.name] = "Pending"
    return phases, admitted


def _respec(plan: RunPlan, obs: RunObservation, phases: dict[str, str]) -> None:
    run = obs.run
    for task in run.spec.tasks:
        child = obs.tasks.get(task.name)
        if child is None or phases[task.name] != "Pending" or (child.status and child.status.attempts):
            continue
        desired = {k: v for k, v in task_spec(run, task).wire().items() if k not in RUN_OWNED_FIELDS}
        current = {k: v for k, v in child.spec.wire().items() if k not in RUN_OWNED_FIELDS}
        if desired != current:
            plan.respec[child.metadata.name] = {k: desired.get(k) for k in sorted(set(desired) | set(current))}


def _skipped(child: AgentTask, reason: str, message: str, now: datetime) -> AgentTaskStatus:
    status = (child.status or AgentTaskStatus()).model_copy(deep=True)
    status.phase, status.reason, status.message = "Skipped", reason, message
    status.branch = child.spec.branch
    status.finished_at = iso(now)
    status.next_attempt_at = None
    status.conditions = set_condition(
        status.conditions, "Succeeded", "False", reason, message, now, child.metadata.generation
    )
    return status


def _admit(
    plan: RunPlan, obs: RunObservation, start: list[str], phases: dict[str, str], admitted: set[str], used: Spend
) -> list[str]:
    run = obs.run
    reserved = Spend()
    for name in admitted:
        budget = obs.tasks[name].spec.budget
        if budget is not None:
            reserved = _plus(reserved, budget)
    unstarted = sum(1 for p in phases.values() if p == "Pending")
    created = {m["spec"]["task"]: m for m in plan.create if m["kind"] == "AgentTask"}
    running = len(admitted)
    for name in start:
        share = task_share(run.spec.budget, used, reserved, unstarted)
        if share is not None:
            reserved = _plus(reserved, share)
        unstarted -= 1
        running += 1
        budget = share.wire() if share is not None else None
        if name in created:
            created[name]["spec"]["suspend"] = False
            if budget is not None:
                created[name]["spec"]["budget"] = budget
        else:
            plan.admit[obs.tasks[name].metadata.name] = {"spec": {"suspend": False, "budget": budget}}
        phases[name] = "Running"
        plan.events.append(Event(
            "Normal", "TaskStarted", f"task {name} started ({running} of maxParallel {run.spec.max_parallel} running)"
        ))
    return list(start)


def _plus(spend: Spend, budget: Budget) -> Spend:
    return Spend(spend.cost_usd + (budget.max_cost_usd or 0.0), spend.tokens + (budget.max_tokens or 0))


def _merge(plan: RunPlan, obs: RunObservation, phases: dict[str, str], settings: Settings, now: datetime) -> None:
    run, status = obs.run, plan.status
    succeeded = [t.name for t in run.spec.tasks if phases[t.name] == "Succeeded"]
    others = [t.name for t in run.spec.tasks if phases[t.name] != "Succeeded"]
    branch = run.integration_branch
    if not succeeded:
        status.merge = MergeStatus(phase="Skipped", branch=branch, not_merged=others,
                                   message="no task succeeded; nothing to merge")
        plan.finished = True
    elif not obs.merge.exists:
        if run.spec.suspend:
            return
        plan.create.append(merge_report_configmap(run))
        plan.create.append(merge_job(run, merge_request(run, succeeded), settings))
        status.merge = MergeStatus(phase="Running", branch=branch, message=f"merging {len(succeeded)} branches")
        plan.events.append(Event("Normal", "MergeStarted", f"merging {len(succeeded)} task branches into {branch}"))
    elif obs.merge.outcome is None:
        if status.merge is None or status.merge.phase != "Running":
            status.merge = MergeStatus(phase="Running", branch=branch, message=f"merging {len(succeeded)} branches")
    else:
        status.merge = _merge_result(obs.merge, branch, others)
        plan.finished = True
        for conflict in status.merge.conflicts:
            files = ", ".join(f"{f.path} ({f.kind})" for f in conflict.files) or "unknown files"
            with_ = f" with {', '.join(conflict.collides_with)}" if conflict.collides_with else ""
            plan.events.append(Event("Warning", "MergeConflict", f"task {conflict.task} conflicts{with_} in {files}"))


def _merge_result(view: MergeView, branch: str, others: list[str]) -> MergeStatus:
    report = view.report
    if report is not None:
        result = report.model_copy(deep=True)
        result.branch = result.branch or branch
        result.conflict_count = result.conflict_count or sum(len(c.files) for c in result.conflicts)
        return result
    if view.outcome == "Succeeded":
        message = "the merge Job succeeded but its report could not be read"
    else:
        message = view.message or "the merge Job failed"
    return MergeStatus(phase="Failed", branch=branch, not_merged=others, message=message)


def _waiting(obs: RunObservation, name: str, phases: dict[str, str]) -> tuple[str, str]:
    run = obs.run
    if run.spec.suspend:
        return "Suspended", "the run is suspended"
    deps = [d for d in run.spec.task(name).depends_on if phases.get(d) != "Succeeded"]
    if deps:
        return "WaitingForDependencies", f"waiting for {', '.join(sorted(deps))}"
    return "WaitingForSlot", f"all {run.spec.max_parallel} slots (maxParallel) are in use"


def _summary(child: AgentTaskStatus) -> TaskStatus:
    message = child.message
    if message and len(message) > SUMMARY_MESSAGE_LIMIT:
        message = message[: SUMMARY_MESSAGE_LIMIT - 3] + "..."
    return TaskStatus(
        phase=child.phase, branch=child.branch, commit=child.commit, attempts=child.attempts, pod=child.pod,
        reason=child.reason, message=message, usage=child.usage, started_at=child.started_at,
        finished_at=child.finished_at,
    )


def _summarise(
    plan: RunPlan, obs: RunObservation, phases: dict[str, str], admitted: set[str], started_now: set[str],
    old: ParallelRunStatus,
) -> None:
    run, status = obs.run, plan.status
    task_of = {child.metadata.name: name for name, child in obs.tasks.items()}
    skipped_status = {task_of[k]: v for k, v in plan.skip.items() if k in task_of}
    tasks: dict[str, TaskStatus] = {}
    for task in run.spec.tasks:
        name = task.name
        child = obs.tasks.get(name)
        if name in skipped_status:
            summary = _summary(skipped_status[name])
        elif child is not None and child.status is not None:
            summary = _summary(child.status)
        else:
            summary = TaskStatus(phase="Pending", branch=run.branch_of(name))
        if name in started_now:
            summary.reason, summary.message = "Starting", "admitted; its pod is being created"
        elif summary.phase == "Pending" and name not in admitted and phases.get(name) == "Pending":
            summary.reason, summary.message = _waiting(obs, name, phases)
        tasks[name] = summary
        before = old.tasks.get(name)
        if summary.phase in ENDED_TASK_PHASES and (before is None or before.phase != summary.phase):
            plan.events.append(_task_ended_event(name, summary))
    status.tasks = tasks
    status.recount()


def _task_ended_event(name: str, summary: TaskStatus) -> Event:
    if summary.phase == "Succeeded":
        commit = (summary.commit or "")[:12]
        return Event("Normal", "TaskSucceeded", f"task {name} succeeded" + (f" at {commit}" if commit else ""))
    why = f": {summary.reason}" + (f": {summary.message}" if summary.message else "") if summary.reason else ""
    return Event("Warning", f"Task{summary.phase}", f"task {name} {summary.phase.lower()}{why}")


def _phase(plan: RunPlan, obs: RunObservation, old: ParallelRunStatus, now: datetime) -> None:
    run, status = obs.run, plan.status
    generation = run.metadata.generation
    counts = status.counts
    if plan.finished:
        merge = status.merge
        if counts.failed or counts.skipped or counts.cancelled or (merge is not None and merge.phase == "Failed"):
            status.phase = "Failed"
            failed = [n for n, t in status.tasks.items() if t.phase in ("Failed", "Skipped", "Cancelled")]
            if failed:
                status.reason = "TasksFailed"
                status.message = f"{len(failed)} of {counts.total} tasks did not succeed: {', '.join(failed)}"
            else:
                status.reason, status.message = "MergeFailed", (merge.message if merge else None) or "merge failed"
        elif merge is not None and merge.phase == "Conflicted":
            status.phase, status.reason = "Conflicted", "MergeConflicts"
            status.message = (
                f"{len(merge.conflicts)} tasks conflict in {merge.conflict_count} files; "
                f"{len(merge.merged)} merged into {merge.branch}"
            )
        else:
            status.phase, status.reason = "Succeeded", "Merged"
            merged = len(merge.merged) if merge else 0
            status.message = f"{merged} tasks merged into {merge.branch if merge else run.integration_branch}"
        status.finished_at = iso(now)
        event_type = "Normal" if status.phase == "Succeeded" else "Warning"
        plan.events.append(Event(event_type, status.phase, status.message or status.phase))
    elif obs.merge.exists or any(m["kind"] == "Job" for m in plan.create):
        # a merge that started finishes even if the run is suspended meanwhile
        status.phase, status.reason, status.message = "Merging", None, None
    elif run.spec.suspend:
        status.phase = "Suspended"
        status.reason, status.message = "Suspended", "spec.suspend is true: running tasks stop, none start"
    elif any(p != "Pending" for p in (t.phase for t in status.tasks.values())) or plan.admit or any(
        m["kind"] == "AgentTask" and not m["spec"]["suspend"] for m in plan.create
    ):
        status.phase, status.reason, status.message = "Running", None, None
    else:
        status.phase, status.reason, status.message = "Pending", None, None

    if status.phase != "Pending":
        status.started_at = status.started_at or iso(now)
    if status.phase == "Suspended" and old.phase != "Suspended":
        stopping = len(plan.suspend)
        plan.events.append(Event("Normal", "Suspended", f"run suspended: stopping {stopping} running tasks"))
    elif old.phase == "Suspended" and status.phase != "Suspended":
        plan.events.append(Event("Normal", "Resumed", "run resumed: tasks start again"))

    suspended = run.spec.suspend and not plan.finished and status.phase not in FINAL_RUN_PHASES
    status.conditions = set_condition(
        status.conditions, "Suspended", "True" if suspended else "False",
        "Suspended" if suspended else "NotSuspended", "spec.suspend is true" if suspended else "", now, generation,
    )
    if status.phase == "Succeeded":
        state = "True"
    elif status.phase in FINAL_RUN_PHASES:
        state = "False"
    else:
        state = "Unknown"
    status.conditions = set_condition(
        status.conditions, "Succeeded", state, status.reason or status.phase, status.message or "", now, generation
    )
