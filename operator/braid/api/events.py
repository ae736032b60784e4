"""One line of `braid run --events`: what happened in a local run, for another program to follow."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import Model


class RunEvent(Model):
    """A JSON object per line. `reason` is the same CamelCase word the cluster's Events carry."""

    time: str = Field(description="When, in UTC (RFC 3339, seconds).")
    run: str = Field(description="The ParallelRun's name.")
    type: Literal["Normal", "Warning"]
    reason: str = Field(description="TaskStarted, Succeeded, AttemptFailed, TaskFailed, TaskSkipped, MergeStarted, "
                        "MergeConflict, RunEnded, ... (see docs/events.md).")
    message: str
    task: str | None = Field(None, description="The task the event is about; absent for the run as a whole.")
    attempt: int | None = Field(None, description="The attempt of `task` the event is about.")
    phase: str | None = Field(None, description="The task's phase after an attempt, or the run's at RunEnded.")
