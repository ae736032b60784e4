"""A ParallelRun's next step on the cluster. Pure.

plan.step decides for both launchers; the modules beside this one turn its decision into
what the cluster needs: AgentTasks to create, admit, skip, bring up to date or suspend,
and the merge Job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from braid.api import AgentTask, ParallelRun, ParallelRunStatus
from braid.plan import Event, step
from braid.plan.step import invalid
from braid.settings import Settings

from .admit import admit
from .create import create_missing, create_resolvers, delete_strays
from .merge import merge_status, start_merge
from .observe import MergeView, task_view
from .respec import respec
from .skip import skip
from .suspend import suspend


@dataclass(frozen=True)
class RunObservation:
    run: ParallelRun
    tasks: dict[str, AgentTask]
    """The run's AgentTasks by task name."""
    strays: list[str] = field(default_factory=list)
    """AgentTasks of the run whose task is no longer in the spec."""
    resolvers: dict[str, AgentTask] = field(default_factory=dict)
    """The run's resolver AgentTasks, by the task whose conflicts each resolves."""
    merge: MergeView = field(default_factory=MergeView)


@dataclass
class RunPlan:
    status: ParallelRunStatus
    create: list[dict[str, Any]] = field(default_factory=list)
    admit: dict[str, dict[str, Any]] = field(default_factory=dict)
    """AgentTask name -> merge patch that lets it start."""
    suspend: list[str] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    """AgentTask names the cancelled run stops."""
    respec: dict[str, dict[str, Any]] = field(default_factory=dict)
    """AgentTask name -> merge patch bringing a not-yet-started task up to date with the run's spec."""
    skip: dict[str, dict[str, Any]] = field(default_factory=dict)
    """AgentTask name -> merge patch telling it that it will never run."""
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finished: bool = False
    """The run reached its final phase in this step."""


def decide_run(obs: RunObservation, settings: Settings, now: datetime) -> RunPlan:
    run = obs.run
    views = {name: task_view(child) for name, child in obs.tasks.items()}
    resolvers = {name: task_view(child) for name, child in obs.resolvers.items()}
    decided = step(run, views, merge_status(obs.merge, run), now, resolvers=resolvers)
    plan = RunPlan(status=decided.status, finished=decided.finished)
    if not decided.closed:
        create_missing(plan, obs)
        delete_strays(plan, obs)
        admit(plan, obs, decided.start)
        skip(plan, obs, decided.skip)
        respec(plan, obs)
        suspend(plan, obs)
        children = {**obs.tasks, **{c.spec.task: c for c in obs.resolvers.values()}}
        plan.cancel = sorted(child.metadata.name for name in decided.cancel
                             if (child := children.get(name)) is not None and not child.spec.cancel)
        create_resolvers(plan, obs, decided.resolve)
        start_merge(plan, run, decided.merge, settings)
    plan.events += decided.events
    return plan


def invalid_run(old: ParallelRunStatus, generation: int | None, reason: str, message: str, now: datetime) -> RunPlan:
    """A spec that can never run: a Failed condition and an Event, nothing created."""
    decided = invalid(old, generation, reason, message, now)
    return RunPlan(status=decided.status, events=decided.events)
