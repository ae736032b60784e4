"""AgentTasks to create for tasks that have none, and to delete for tasks that left the spec. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid.kube import agent_task, resolver_agent_task
from braid.plan import Event

if TYPE_CHECKING:
    from braid.plan.step import StartResolver

    from .run import RunObservation, RunPlan


def create_missing(plan: RunPlan, obs: RunObservation) -> None:
    """Each task gets its AgentTask, created suspended: admission lets it start."""
    run = obs.run
    created = [agent_task(run, task) for task in run.spec.tasks if task.name not in obs.tasks]
    if created:
        names = ", ".join(m["spec"]["task"] for m in created)
        plan.events.append(Event("Normal", "TasksCreated", f"created {len(created)} AgentTasks: {names}"))
    plan.create += created


def delete_strays(plan: RunPlan, obs: RunObservation) -> None:
    plan.delete = list(obs.strays)
    for name in obs.strays:
        plan.events.append(Event("Normal", "TaskRemoved", f"AgentTask {name} deleted: its task left the spec"))


def create_resolvers(plan: RunPlan, obs: RunObservation, start: list[StartResolver]) -> None:
    """The resolvers plan.step starts: AgentTasks created released, with their budget share."""
    for resolver in start:
        if resolver.task not in obs.resolvers:
            plan.create.append(resolver_agent_task(obs.run, resolver.spec))
