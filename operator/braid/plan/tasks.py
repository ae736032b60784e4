"""Each task of a run fully resolved, as its runner executes it. Pure."""

from __future__ import annotations

from braid.api import AgentTaskSpec, ParallelRun, TaskSpec


def task_spec(run: ParallelRun, task: TaskSpec) -> AgentTaskSpec:
    """Run defaults with the task's overrides, its branch and its dependencies' branches.

    Held (`suspend`) until the run admits it; its budget share is set at admission.
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
