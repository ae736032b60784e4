"""Skips: the run tells a task that it will never run; the task's own reconciler records it. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid.api import SkipRequest
from braid.plan import Skip

from .admit import _created

if TYPE_CHECKING:
    from .run import RunObservation, RunPlan


def skip(plan: RunPlan, obs: RunObservation, skips: dict[str, Skip]) -> None:
    created = _created(plan)
    for name, decision in skips.items():
        request = SkipRequest(reason=decision.reason, message=decision.message).wire()
        child = obs.tasks.get(name)
        if child is None:
            if name in created:
                created[name]["spec"]["skip"] = request
        elif child.spec.skip is None:
            plan.skip[child.metadata.name] = {"spec": {"skip": request}}
