"""Admission: let the tasks plan.step starts run, each with its budget share. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from braid.plan import Start

if TYPE_CHECKING:
    from .run import RunObservation, RunPlan


def _created(plan: RunPlan) -> dict[str, dict[str, Any]]:
    return {m["spec"]["task"]: m for m in plan.create if m["kind"] == "AgentTask"}


def admit(plan: RunPlan, obs: RunObservation, start: list[Start]) -> None:
    """An AgentTask created in this step is created admitted; an existing one is patched."""
    created = _created(plan)
    for decision in start:
        budget = decision.budget.wire() if decision.budget is not None else None
        if decision.task in created:
            spec = created[decision.task]["spec"]
            spec["suspend"] = False
            if budget is not None:
                spec["budget"] = budget
        else:
            plan.admit[obs.tasks[decision.task].metadata.name] = {"spec": {"suspend": False, "budget": budget}}
