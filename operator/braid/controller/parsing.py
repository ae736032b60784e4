"""Bodies from the API server as api models. A status the models cannot read (written by another
version of braid, or by hand) is set aside rather than making the whole object unreadable."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from braid.api import AgentTask, AgentTaskStatus, ParallelRun, ParallelRunStatus

log = logging.getLogger("braid.controller")


def _without_status(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "status"}


def parse_run(body: dict[str, Any]) -> ParallelRun:
    """Raises ValidationError when the spec or metadata is invalid."""
    run = ParallelRun.model_validate(_without_status(body))
    run.status = run_status(body)
    return run


def run_status(body: dict[str, Any]) -> ParallelRunStatus | None:
    if not body.get("status"):
        return None
    try:
        return ParallelRunStatus.model_validate(body["status"])
    except ValidationError as exc:
        log.warning("ParallelRun %s: unreadable status set aside: %s", body["metadata"].get("name"),
                    exc.errors()[0].get("msg"))
        return None


def parse_task(body: dict[str, Any]) -> AgentTask:
    """Raises ValidationError when the spec or metadata is invalid."""
    task = AgentTask.model_validate(_without_status(body))
    if body.get("status"):
        try:
            task.status = AgentTaskStatus.model_validate(body["status"])
        except ValidationError as exc:
            log.warning("AgentTask %s: unreadable status set aside: %s", body["metadata"].get("name"),
                        exc.errors()[0].get("msg"))
    return task
