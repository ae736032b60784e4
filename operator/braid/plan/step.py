"""One step of a run, the same for both launchers. Pure: the launcher says what it observed and when.

From the spec, each task's observed state and the merge's, `step` decides which tasks
start now (each with its budget share), which are skipped and why, which wait for their
next attempt and until when, when the merge is due and what it merges, and the run's
status: phase, reason, message, conditions, counts and per-task summaries. The operator
turns the decision into objects, local mode into processes; neither decides anything
this function decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from braid.api import (
    AgentTaskSpec,
    AgentTaskStatus,
    Budget,
    MergeRequest,
    MergeStatus,
    MergeTask,
    ParallelRun,
    ParallelRunStatus,
    PullRequestStatus,
    Resolution,
    TaskCost,
    TaskStatus,
    Verification,
    resolver_name,
)
from braid.api.status import ENDED_TASK_PHASES

from .attempt import attempt_budget
from .budget import Spend, exhausted, spent, task_share
from .clock import iso, parse
from .conditions import condition, set_condition
from .dag import PlanError, nodes_of, validate
from .events import Event
from .resolve import handed_out, resolver_spec
from .risk import conflict_risk, risk_events
from .schedule import Ranked, Skip, decide, ranks

FINAL_RUN_PHASES = frozenset({"Succeeded", "Conflicted", "Failed", "Cancelled"})
SUMMARY_MESSAGE_LIMIT = 256


@dataclass(frozen=True)
class TaskView:
    """What a launcher observed of one task."""

    status: AgentTaskStatus | None = None
    """None: the task has no AgentTask yet (the operator creates it)."""
    admitted: bool = False
    """It holds a slot: an attempt runs, or its next attempt is due."""
    share: Budget | None = None
    """Its share of the run's budget, granted when it was admitted."""
    skip: Skip | None = None
    """The run has decided to skip it; its own status may not say so yet."""


@dataclass(frozen=True)
class Start:
    task: str
    budget: Budget | None
    """The task's share of the run's budget."""


@dataclass(frozen=True)
class Retry:
    task: str
    at: datetime
    """Not before this moment."""
    budget: Budget | None
    """What the next attempt may spend: the share less what the task spent so far."""


@dataclass(frozen=True)
class StartResolver:
    task: str
    """The conflicting task."""
    spec: AgentTaskSpec
    """The resolver's spec (plan.resolve.resolver_spec), its budget share set."""


@dataclass
class Step:
    status: ParallelRunStatus
    start: list[Start] = field(default_factory=list)
    """Tasks to start now, most urgent first."""
    skip: dict[str, Skip] = field(default_factory=dict)
    """Tasks that can never run, with why."""
    retry: list[Retry] = field(default_factory=list)
    """Admitted tasks waiting for their next attempt."""
    merge: MergeRequest | None = None
    """Every task has ended: merge these branches (set once, when the merge is due to start, and again
    for each later round, once the resolvers of a round have ended)."""
    resolve: list[StartResolver] = field(default_factory=list)
    """Resolver tasks to start now (spec.merge.resolve strategy agent)."""
    events: list[Event] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    """The run is cancelled: these tasks (and resolvers, <task>.resolve) have not ended and must stop (what
    they wrote is pushed)."""
    finished: bool = False
    """The run reached its final phase in this step."""
    closed: bool = False
    """Nothing more happens: the spec can never run, or the run ended before this step."""


def step(
    run: ParallelRun,
    tasks: Mapping[str, TaskView],
    merge: MergeStatus | None,
    now: datetime,
    *,
    cancelled: bool = False,
    resolvers: Mapping[str, TaskView] | None = None,
) -> Step:
    """The run's next step. `merge` is the merge as observed: None before it started, phase Running while
    it runs, its report once it ended (of the round status.merge.round names). `cancelled`: the run was
    stopped (or its spec.cancel is set); start and merge nothing, stop what runs. `resolvers`: the
    resolver tasks, by the task whose conflicts each resolves."""
    resolvers = resolvers or {}
    cancelled = cancelled or run.spec.cancel
    old = run.status or ParallelRunStatus()
    generation = run.metadata.generation
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    nodes = nodes_of(run.spec.tasks)
    try:
        validate(nodes)
    except PlanError as exc:
        return invalid(old, generation, exc.reason, str(exc), now)
    status.conditions = set_condition(
        status.conditions, "Valid", "True", "Valid", f"{len(run.spec.tasks)} tasks", now, generation
    )
    was_valid = condition(old.conditions, "Valid")
    if was_valid is not None and was_valid.status == "False":
        # the spec was fixed: check it afresh
        status.reason = status.message = status.finished_at = None
        status.phase = "Pending"
    out = Step(status=status)
    phases, admitted = _phases(run, tasks)
    if status.phase in FINAL_RUN_PHASES and status.finished_at is not None:
        # a finished run stays as it ended; its summary still follows late reports (usage of a stopped pod)
        _summarise(out, run, tasks, phases, admitted, set(), old, now)
        _summarise_resolvers(out, resolvers, old)
        _risk(out, run, tasks, old)
        out.closed = True
        return out

    used = spent([v.status.usage for v in [*tasks.values(), *resolvers.values()]
                  if v.status is not None and v.status.usage and _ended(v)])
    decision = decide(nodes, phases, run.spec.max_parallel, budget_exhausted=exhausted(run.spec.budget, used),
                      suspended=run.spec.suspend or cancelled, rank=start_order(run))
    for name, skip in decision.skip.items():
        phases[name] = "Skipped"
        out.skip[name] = skip
    if any(s.reason == "BudgetExceeded" for s in decision.skip.values()):
        out.events.append(Event(
            "Warning", "BudgetExceeded",
            f"the budget is spent (${used.cost_usd:g}, {used.tokens} tokens); tasks not started are skipped",
        ))
    _admit(out, run, tasks, decision.start, phases, admitted, used)
    _retries(out, tasks, now)
    _retries(out, {resolver_name(t): v for t, v in resolvers.items()}, now)
    if cancelled:
        out.cancel = [t.name for t in run.spec.tasks if phases[t.name] not in ENDED_TASK_PHASES]
        out.cancel += [resolver_name(t) for t, v in resolvers.items() if not _ended(v)]

    all_ended = decision.all_ended and all(tasks.get(t.name) is not None and tasks[t.name].status is not None
                                           for t in run.spec.tasks)
    if cancelled:
        all_ended = all_ended and all(_ended(v) for v in resolvers.values())
    if all_ended and cancelled:
        out.finished = True
        if merge is not None and merge.phase not in ("Pending", "Running") and status.merge is not None \
                and status.merge.phase == "Running":
            # a merge stopped by the cancel (during verification) says how it ended
            record = status.merge.last_pushed
            status.merge = merge.model_copy(deep=True)
            status.merge.last_pushed = status.merge.last_pushed or record
    elif all_ended:
        _merge(out, run, phases, merge, tasks, resolvers, used)
    started = {s.task for s in out.start}
    _summarise(out, run, tasks, phases, admitted | started, started, old, now)
    _summarise_resolvers(out, resolvers, old)
    _risk(out, run, tasks, old)
    _outcome(out, run, old, now, cancelled, active=bool(admitted or started))
    return out


def _summarise_resolvers(out: Step, resolvers: Mapping[str, TaskView], old: ParallelRunStatus) -> None:
    lines = {name: summary(view.status) for name, view in resolvers.items() if view.status is not None}
    for name, line in lines.items():
        before = old.resolvers.get(name)
        if line.phase in ENDED_TASK_PHASES and (before is None or before.phase != line.phase):
            out.events.append(_task_ended_event(resolver_name(name), line))
    for start in out.resolve:
        lines.setdefault(start.task, TaskStatus(phase="Pending", branch=start.spec.branch, reason="Starting",
                                                message="admitted; its attempt is being started"))
    out.status.resolvers = lines
    out.status.recount()


def _risk(out: Step, run: ParallelRun, tasks: Mapping[str, TaskView], old: ParallelRunStatus) -> None:
    """status.conflictRisk by plan.risk's rules, and an Event for each new pair."""
    risks, truncated = conflict_risk(run, {name: view.status for name, view in tasks.items()})
    out.status.conflict_risk, out.status.conflict_risk_truncated = risks, truncated
    out.events.extend(risk_events(old.conflict_risk, risks))


def start_order(run: ParallelRun) -> dict[str, tuple[float, ...]]:
    """The order ready tasks start in, by spec.scheduling.strategy and the tasks' priorities."""
    tasks = [Ranked(t.name, tuple(t.depends_on), t.priority or 0, t.estimated_cost_usd, len(t.prompt))
             for t in run.spec.tasks]
    return ranks(tasks, run.spec.scheduling.strategy)


def _ended(view: TaskView) -> bool:
    return view.status is not None and view.status.phase in ENDED_TASK_PHASES


def invalid(old: ParallelRunStatus, generation: int | None, reason: str, message: str, now: datetime) -> Step:
    """A spec that can never run: a Failed condition and an Event, nothing started."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    status.phase = "Failed"
    status.reason, status.message = reason, message
    status.conditions = set_condition(status.conditions, "Valid", "False", reason, message, now, generation)
    status.conditions = set_condition(status.conditions, "Succeeded", "False", reason, message, now, generation)
    out = Step(status=status, closed=True)
    before = condition(old.conditions, "Valid")
    if before is None or before.status != "False" or before.message != message:
        out.events.append(Event("Warning", reason, message))
    return out


def _phases(run: ParallelRun, tasks: Mapping[str, TaskView]) -> tuple[dict[str, str], set[str]]:
    """Each task's phase as plan.decide sees it: an admitted task holds a slot until it ends."""
    phases: dict[str, str] = {}
    admitted: set[str] = set()
    for task in run.spec.tasks:
        view = tasks.get(task.name)
        phase = view.status.phase if view is not None and view.status is not None else "Pending"
        if view is not None and view.skip is not None and phase not in ENDED_TASK_PHASES:
            phases[task.name] = "Skipped"
        elif phase in ENDED_TASK_PHASES:
            phases[task.name] = phase
        elif view is not None and view.admitted:
            phases[task.name] = "Running"
            admitted.add(task.name)
        else:
            phases[task.name] = "Pending"
    return phases, admitted


def _plus(spend: Spend, budget: Budget | None) -> Spend:
    if budget is None:
        return spend
    return Spend(spend.cost_usd + (budget.max_cost_usd or 0.0), spend.tokens + (budget.max_tokens or 0))


def _admit(out: Step, run: ParallelRun, tasks: Mapping[str, TaskView], start: list[str], phases: dict[str, str],
           admitted: set[str], used: Spend) -> None:
    reserved = Spend()
    for name in admitted:
        reserved = _plus(reserved, tasks[name].share)
    unstarted = sum(1 for p in phases.values() if p == "Pending")
    running = len(admitted)
    for name in start:
        share = task_share(run.spec.budget, used, reserved, unstarted)
        reserved = _plus(reserved, share)
        unstarted -= 1
        running += 1
        phases[name] = "Running"
        out.start.append(Start(name, share))
        out.events.append(Event(
            "Normal", "TaskStarted", f"task {name} started ({running} of maxParallel {run.spec.max_parallel} running)"
        ))


def _retries(out: Step, tasks: Mapping[str, TaskView], now: datetime) -> None:
    for name, view in tasks.items():
        state = view.status
        if view.admitted and state is not None and state.phase == "Pending" and state.attempts:
            at = parse(state.next_attempt_at) or now
            out.retry.append(Retry(name, at, attempt_budget(view.share, state.usage)))


def merge_request(run: ParallelRun, succeeded: set[str], last_pushed: str | None = None, round_: int = 1,
                  resolutions: list[Resolution] | None = None,
                  resolution_records: Mapping[str, str] | None = None, *,
                  costs: list[TaskCost] | None = None) -> MergeRequest:
    """Merge the succeeded tasks (spec order; the merge sorts them topologically); report the rest.

    `last_pushed`: the integration commit braid itself last pushed for this run, the one tip
    the merge may replace. `round_` and `resolutions`: a later round, with what the resolvers of
    the earlier ones made. `resolution_records`: what braid last pushed to each resolution branch.
    `costs`: each task's phase and spend, for spec.delivery's pull request.
    """
    return MergeRequest(
        run=run.name,
        repo=run.spec.repo,
        integration_branch=run.integration_branch,
        on_conflict=run.spec.merge.on_conflict,
        resolve=run.spec.merge.resolve,
        verify=run.spec.merge.verify,
        on_verify_failure=run.spec.merge.on_verify_failure,
        tasks=[MergeTask(name=t.name, branch=run.branch_of(t.name), depends_on=t.depends_on)
               for t in run.spec.tasks if t.name in succeeded],
        not_merged=[t.name for t in run.spec.tasks if t.name not in succeeded],
        last_pushed=last_pushed,
        round=round_,
        resolutions=resolutions or [],
        resolution_records=dict(resolution_records or {}),
        pull_request=run.spec.delivery.pull_request if run.spec.delivery is not None else None,
        costs=costs or [],
    )


def task_costs(run: ParallelRun, tasks: Mapping[str, TaskView], phases: dict[str, str]) -> list[TaskCost]:
    """Each task's phase and what it spent, in spec order."""
    out = []
    for task in run.spec.tasks:
        view = tasks.get(task.name)
        usage = view.status.usage if view is not None and view.status is not None else None
        out.append(TaskCost(task=task.name, phase=phases.get(task.name, "Pending"),
                            cost_usd=usage.cost_usd if usage else 0.0,
                            tokens=usage.input_tokens + usage.output_tokens if usage else 0))
    return out


def _merge(out: Step, run: ParallelRun, phases: dict[str, str], merge: MergeStatus | None,
           tasks: Mapping[str, TaskView], resolvers: Mapping[str, TaskView], used: Spend) -> None:
    status = out.status
    succeeded = {t.name for t in run.spec.tasks if phases[t.name] == "Succeeded"}
    others = [t.name for t in run.spec.tasks if t.name not in succeeded]
    branch = run.integration_branch
    # what braid last pushed to the integration branch outlives every merge status written here
    record = status.merge.last_pushed if status.merge is not None else None
    round_ = status.merge.round if status.merge is not None else 1
    resolutions = status.merge.resolutions if status.merge is not None else []
    records = {t: v.status.commit for t, v in resolvers.items() if v.status is not None and v.status.commit}
    running = MergeStatus(phase="Running", branch=branch, message=f"merging {len(succeeded)} branches",
                          last_pushed=record, round=round_, resolutions=resolutions)
    if not succeeded:
        status.merge = MergeStatus(phase="Skipped", branch=branch, not_merged=others,
                                   message="no task succeeded; nothing to merge", last_pushed=record)
        out.finished = True
    elif merge is None:
        if run.spec.suspend:
            return
        out.merge = merge_request(run, succeeded, record, round_, resolutions, records,
                                  costs=task_costs(run, tasks, phases))
        status.merge = running
        if round_ == 1:
            out.events.append(Event("Normal", "MergeStarted",
                                    f"merging {len(succeeded)} task branches into {branch}"))
    elif merge.phase in ("Pending", "Running"):
        if status.merge is None or status.merge.phase != "Running":
            status.merge = running
    elif merge.phase == "Resolving":
        _resolve(out, run, merge, succeeded, resolvers, used, records, task_costs(run, tasks, phases))
    else:
        result = merge.model_copy(deep=True)
        result.branch = result.branch or branch
        result.conflict_count = result.conflict_count or sum(len(c.files) for c in result.conflicts)
        # a report that says nothing of it (a merge that failed before it could tell) leaves the record as it was
        result.last_pushed = result.last_pushed or record
        if result.phase == "Failed" and not result.not_merged:
            result.not_merged = others
        status.merge = result
        out.finished = True
        for found in result.verification.culprits if result.verification is not None else []:
            passed = found.last_passed
            out.events.append(Event("Warning", "VerificationFailed", (
                f"verification fails from task {found.task} on: it passes with "
                f"{len(passed.tasks)} tasks ({passed.commit[:12]}) and fails with {found.task} merged "
                f"({found.first_failed.commit[:12]})"
                + (f"; not merged: {', '.join(found.excluded)}" if found.excluded else ""))))
        for conflict in result.resolved:
            agents = sorted({f.resolution for f in conflict.files if f.resolution and f.resolution.startswith("agent")})
            if agents:
                out.events.append(Event("Normal", "ConflictResolved", (
                    f"task {conflict.task}: conflicts in {', '.join(f.path for f in conflict.files)} resolved by "
                    f"{'; '.join(agents)}")))
        for conflict in result.conflicts:
            if conflict.reason is not None:
                said = f": {conflict.message}" if conflict.message else ""
                out.events.append(Event("Warning", "MergeConflict",
                                        f"task {conflict.task} was not merged ({conflict.reason}){said}"))
                continue
            files = ", ".join(f"{f.path} ({f.kind})" for f in conflict.files) or "unknown files"
            with_ = f" with {', '.join(conflict.collides_with)}" if conflict.collides_with else ""
            out.events.append(Event("Warning", "MergeConflict", f"task {conflict.task} conflicts{with_} in {files}"))
        if (pr := result.pull_request) is not None:
            out.events.append(_pull_request_event(pr))


def _pull_request_event(pr: PullRequestStatus) -> Event:
    if pr.phase == "Failed":
        return Event("Warning", "PullRequestFailed", f"the {pr.provider} pull request: {pr.message or 'failed'}")
    where = f" #{pr.number}" + (f" {pr.url}" if pr.url else "")
    reason = "PullRequestOpened" if pr.action == "Opened" else "PullRequestUpdated"
    return Event("Normal", reason, f"{pr.provider} pull request{where} {(pr.action or 'Updated').lower()}")


def _resolve(out: Step, run: ParallelRun, merge: MergeStatus, succeeded: set[str],
             resolvers: Mapping[str, TaskView], used: Spend, records: Mapping[str, str],
             costs: list[TaskCost]) -> None:
    """A round handed conflicts to resolvers: start those not started, and once all have ended, merge again
    with what they made."""
    status = out.status
    report = merge.model_copy(deep=True)
    report.branch = report.branch or run.integration_branch
    report.last_pushed = report.last_pushed or (status.merge.last_pushed if status.merge is not None else None)
    before = status.merge
    status.merge = report
    handed = handed_out(report)
    if before is None or before.phase != "Resolving" or before.round != report.round:
        for r in handed:
            out.events.append(Event("Normal", "ResolverStarted", (
                f"task {r.task} conflicts in {', '.join(r.files) or 'unknown files'}; {r.resolver} resolves them "
                f"on {r.branch}")))
    waiting = [r for r in handed if resolvers.get(r.task) is None or resolvers[r.task].status is None]
    reserved = Spend()
    for r in handed:
        view = resolvers.get(r.task)
        if view is not None and not _ended(view):
            reserved = _plus(reserved, view.share)
    budget_gone = exhausted(run.spec.budget, used)
    for i, r in enumerate(waiting):
        if budget_gone:
            continue
        share = task_share(run.spec.budget, used, reserved, len(waiting) - i)
        reserved = _plus(reserved, share)
        spec = resolver_spec(run, r).model_copy(update={"budget": share})
        out.resolve.append(StartResolver(r.task, spec))
    if out.resolve or any(not _ended(resolvers[r.task]) for r in handed if r.task in resolvers):
        return
    outcome: list[Resolution] = []
    for r in report.resolutions:
        if r in handed:
            view = resolvers.get(r.task)
            state = view.status if view is not None else None
            r = r.model_copy()
            if state is not None and state.phase == "Succeeded" and state.commit:
                r.commit = state.commit
            else:
                why = "the budget is spent" if state is None else f"{state.phase}: {state.reason or ''} " \
                      f"{state.message or ''}".strip()
                r.message = why[:1024]
        outcome.append(r)
    status.merge = MergeStatus(phase="Running", branch=report.branch, message="merging again with the resolutions",
                               last_pushed=report.last_pushed, round=report.round + 1, resolutions=outcome)
    out.merge = merge_request(run, succeeded, report.last_pushed, report.round + 1, outcome, records, costs=costs)


def _waiting(run: ParallelRun, name: str, phases: dict[str, str]) -> tuple[str, str]:
    if run.spec.suspend:
        return "Suspended", "the run is suspended"
    deps = [d for d in run.spec.task(name).depends_on if phases.get(d) != "Succeeded"]
    if deps:
        return "WaitingForDependencies", f"waiting for {', '.join(sorted(deps))}"
    return "WaitingForSlot", f"all {run.spec.max_parallel} slots (maxParallel) are in use"


def summary(child: AgentTaskStatus) -> TaskStatus:
    """A task's line in the run's status: its own status, shortened."""
    message = child.message
    if message and len(message) > SUMMARY_MESSAGE_LIMIT:
        message = message[: SUMMARY_MESSAGE_LIMIT - 3] + "..."
    return TaskStatus(
        phase=child.phase, branch=child.branch, commit=child.commit, attempts=child.attempts, pod=child.pod,
        reason=child.reason, message=message, changed_files=child.changed_files, usage=child.usage,
        resource_usage=child.resource_usage, started_at=child.started_at, finished_at=child.finished_at,
    )


def _summarise(out: Step, run: ParallelRun, tasks: Mapping[str, TaskView], phases: dict[str, str],
               admitted: set[str], started_now: set[str], old: ParallelRunStatus, now: datetime) -> None:
    status = out.status
    lines: dict[str, TaskStatus] = {}
    for task in run.spec.tasks:
        name = task.name
        view = tasks.get(name)
        skip = out.skip.get(name) or (view.skip if view is not None else None)
        if view is not None and view.status is not None:
            line = summary(view.status)
        else:
            line = TaskStatus(phase="Pending", branch=run.branch_of(name))
        if skip is not None and line.phase not in ENDED_TASK_PHASES:
            line.phase, line.reason, line.message = "Skipped", skip.reason, skip.message
            line.finished_at = line.finished_at or iso(now)
        elif name in started_now:
            line.reason, line.message = "Starting", "admitted; its attempt is being started"
        elif line.phase == "Pending" and name not in admitted and phases.get(name) == "Pending":
            line.reason, line.message = _waiting(run, name, phases)
        line.branch = line.branch or run.branch_of(name)
        verification = status.merge.verification if status.merge is not None else None
        if verification is not None and name in verification.excluded:
            line.reason = "VerificationFailed"
            line.message = "not merged: " + _excluded_because(verification, name)
        lines[name] = line
        before = old.tasks.get(name)
        if line.phase in ENDED_TASK_PHASES and (before is None or before.phase != line.phase):
            out.events.append(_task_ended_event(name, line))
    status.tasks = lines
    status.recount()


def _excluded_because(verification: Verification, name: str) -> str:
    for c in verification.culprits:
        if c.task == name:
            return f"verification fails from this task on (prefix {c.first_failed.commit[:12]})"
        if name in c.excluded:
            return f"it depends on {c.task}, which fails verification"
    return "verification of the integration fails with it"


def _task_ended_event(name: str, line: TaskStatus) -> Event:
    if line.phase == "Succeeded":
        commit = (line.commit or "")[:12]
        return Event("Normal", "TaskSucceeded", f"task {name} succeeded" + (f" at {commit}" if commit else ""))
    why = f": {line.reason}" + (f": {line.message}" if line.message else "") if line.reason else ""
    return Event("Warning", f"Task{line.phase}", f"task {name} {line.phase.lower()}{why}")


def _outcome(out: Step, run: ParallelRun, old: ParallelRunStatus, now: datetime, cancelled: bool, *,
             active: bool) -> None:
    status = out.status
    generation = run.metadata.generation
    counts = status.counts
    if out.finished:
        _final(status, run, cancelled)
        status.finished_at = iso(now)
        event_type = "Normal" if status.phase == "Succeeded" else "Warning"
        out.events.append(Event(event_type, status.phase, status.message or status.phase))
    elif status.merge is not None and status.merge.phase in ("Running", "Resolving"):
        # a merge that started finishes even if the run is suspended meanwhile
        status.phase, status.reason, status.message = "Merging", None, None
    elif run.spec.suspend:
        status.phase = "Suspended"
        status.reason, status.message = "Suspended", "spec.suspend is true: running tasks stop, none start"
    elif active or counts.total > counts.pending:
        status.phase, status.reason, status.message = "Running", None, None
    else:
        status.phase, status.reason, status.message = "Pending", None, None

    if status.phase != "Pending":
        status.started_at = status.started_at or iso(now)
    if status.phase == "Suspended" and old.phase != "Suspended":
        running = sum(1 for t in status.tasks.values() if t.phase == "Running")
        out.events.append(Event("Normal", "Suspended", f"run suspended: stopping {running} running tasks"))
    elif old.phase == "Suspended" and status.phase != "Suspended":
        out.events.append(Event("Normal", "Resumed", "run resumed: tasks start again"))

    suspended = status.phase == "Suspended"
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


def _final(status: ParallelRunStatus, run: ParallelRun, cancelled: bool) -> None:
    counts, merge = status.counts, status.merge
    not_done = [n for n, t in status.tasks.items() if t.phase in ("Failed", "Skipped", "Cancelled")]
    if cancelled:
        status.phase, status.reason = "Cancelled", "Cancelled"
        status.message = f"the run was cancelled; {counts.succeeded} of {counts.total} tasks had succeeded"
    elif merge is not None and (failed := _verification_failed(merge)):
        status.phase, status.reason, status.message = "Failed", "VerificationFailed", failed
    elif not_done or (merge is not None and merge.phase == "Failed"):
        status.phase = "Failed"
        if not_done:
            status.reason = "TasksFailed"
            status.message = f"{len(not_done)} of {counts.total} tasks did not succeed: {', '.join(not_done)}"
        else:
            status.reason, status.message = "MergeFailed", (merge.message if merge else None) or "merge failed"
    elif merge is not None and merge.phase == "Conflicted":
        status.phase, status.reason = "Conflicted", "MergeConflicts"
        status.message = f"{_conflicts_said(merge)}; {len(merge.merged)} merged into {merge.branch}"
    else:
        status.phase, status.reason = "Succeeded", "Merged"
        merged = len(merge.merged) if merge else 0
        status.message = f"{merged} tasks merged into {merge.branch if merge else run.integration_branch}"


def _verification_failed(merge: MergeStatus) -> str | None:
    """Why spec.merge.verify fails the run: the pushed result fails it, or tasks were left out for it."""
    verification = merge.verification
    if verification is None or (verification.phase == "Passed" and not verification.culprits):
        return None
    culprits = ", ".join(c.task for c in verification.culprits) or "unknown"
    if verification.phase != "Passed" and not verification.excluded:
        where = f"; {merge.branch} pushed as built" if merge.phase != "Failed" else "; nothing pushed"
        return f"verification {verification.phase.lower()} (exit code {verification.exit_code}): it fails from " \
               f"{culprits} on{where}"
    if merge.phase == "Failed":
        return merge.message or "verification failed; nothing pushed"
    return (f"verification failed from {culprits} on; left out {', '.join(verification.excluded)}; "
            f"{len(merge.merged)} tasks merged into {merge.branch}, verified")


def _conflicts_said(merge: MergeStatus) -> str:
    """'2 tasks conflict in 3 files', and the tasks whose whole branch could not be merged."""
    whole = [c for c in merge.conflicts if c.reason is not None]
    by_file = len(merge.conflicts) - len(whole)
    parts = [f"{by_file} tasks conflict in {merge.conflict_count} files"] if by_file or not whole else []
    parts += [f"{c.task} not merged ({c.reason})" for c in whole]
    return "; ".join(parts)
