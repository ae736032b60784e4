"""A task that has not started follows edits of its task in the run's spec. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid.plan import task_spec

if TYPE_CHECKING:
    from .run import RunObservation, RunPlan

# the run sets these as it admits, skips and suspends (and each attempt's copy of the spec
# carries lastPushed, lastTranscript and spent); an edit of the task does not
RUN_OWNED_FIELDS = ("suspend", "budget", "skip", "lastPushed", "lastTranscript", "spent", "cancel")


def respec(plan: RunPlan, obs: RunObservation) -> None:
    run = obs.run
    for task in run.spec.tasks:
        child = obs.tasks.get(task.name)
        if child is None or not child.spec.suspend or child.spec.skip is not None:
            continue
        if child.status is not None and (child.status.attempts or child.status.phase != "Pending"):
            continue
        desired = {k: v for k, v in task_spec(run, task).wire().items() if k not in RUN_OWNED_FIELDS}
        current = {k: v for k, v in child.spec.wire().items() if k not in RUN_OWNED_FIELDS}
        if desired != current:
            plan.respec[child.metadata.name] = {k: desired.get(k) for k in sorted(set(desired) | set(current))}
