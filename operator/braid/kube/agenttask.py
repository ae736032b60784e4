"""The AgentTask of one task of a ParallelRun."""

from __future__ import annotations

from typing import Any

from braid.api import API_VERSION, AgentTaskSpec, ParallelRun, TaskSpec

from . import labels
from .meta import owner_reference
from .names import agenttask_name


def run_owner(run: ParallelRun) -> dict[str, Any]:
    return owner_reference(
        {"apiVersion": API_VERSION, "kind": "ParallelRun", "metadata": {"name": run.name, "uid": run.metadata.uid}}
    )


def task_spec(run: ParallelRun, task: TaskSpec) -> AgentTaskSpec:
    """The task fully resolved: run defaults with the task's overrides, its branch and its dependencies' branches.

    Created suspended: the ParallelRun admits it when its turn comes.
    """
    return AgentTaskSpec(
        run=run.name,
        task=task.name,
        prompt=task.prompt,
        depends_on=task.depends_on,
        paths=task.paths,
        repo=run.spec.repo,
        branch=run.branch_of(task.name),
        dependency_branches=[run.branch_of(d) for d in task.depends_on],
        agent=run.spec.agent_for(task),
        resources=run.spec.resources,
        timeout_seconds=run.spec.task_timeout_seconds,
        retry=run.spec.retry,
        suspend=True,
    )


def agent_task(run: ParallelRun, task: TaskSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentTask",
        "metadata": {
            "name": agenttask_name(run.name, task.name),
            "namespace": run.metadata.namespace,
            "labels": labels.for_task(run.name, task.name),
            "ownerReferences": [run_owner(run)],
        },
        "spec": task_spec(run, task).wire(),
    }
