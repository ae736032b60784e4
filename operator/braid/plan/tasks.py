"""Each task of a run fully resolved, as its runner executes it. Pure."""

from __future__ import annotations

from braid.api import AgentTaskSpec, AgentTaskStatus, Budget, ParallelRun, TaskSpec


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
        resources=run.spec.resources_for(task),
        timeout_seconds=run.spec.task_timeout_seconds,
        retry=run.spec.retry,
        suspend=True,
    )


def attempt_spec(spec: AgentTaskSpec, status: AgentTaskStatus | None, budget: Budget | None) -> AgentTaskSpec:
    """What one attempt of a task runs: its spec, released, with what the attempt may spend (and
    what earlier attempts spent), and the commits braid last pushed to the task's branch and to
    its transcript ref.

    Those records are the task's own status.commit and status.transcript (what its last reported
    attempts pushed), never anything read from git: the runner resumes the branch, and continues
    the saved conversation, only while they hold exactly those commits, so a ref someone else
    created or moved is not taken for braid's work.
    """
    return spec.model_copy(update={
        "suspend": False,
        "budget": budget,
        # a resolver's first attempt resumes the resolution branch at the commit the merge prepared
        "last_pushed": status.commit if status is not None and status.commit else spec.last_pushed,
        "last_transcript": status.transcript if status is not None else None,
        "spent": status.usage if status is not None else None,
    })
