"""Conditions that keep their lastTransitionTime until their status really changes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from braid.api.status import Condition

from .clock import iso


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    old = next((c for c in conditions if c.type == type_), None)
    changed_at = old.last_transition_time if old is not None and old.status == status else iso(now)
    new = Condition(
        type=type_, status=status, reason=reason, message=message[:1024], last_transition_time=changed_at,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [new] if old is None else [
        new if c.type == type_ else c for c in conditions
    ]


def condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
