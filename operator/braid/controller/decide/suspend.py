"""While the run is suspended, every admitted task is held again (its pod stops, its work is pushed). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid.api.status import ENDED_TASK_PHASES

if TYPE_CHECKING:
    from .run import RunObservation, RunPlan


def suspend(plan: RunPlan, obs: RunObservation) -> None:
    if not obs.run.spec.suspend:
        return
    plan.suspend = sorted(
        child.metadata.name for child in obs.tasks.values()
        if not child.spec.suspend and not (child.status and child.status.phase in ENDED_TASK_PHASES)
    )
