"""The operator's decisions: pure functions from observed objects to a plan. No I/O, no kopf."""

from braid.plan import RETRYABLE

from .observe import MergeView, PodView, Terminated, job_failure_message, job_outcome, parse_merge_report
from .run import FINAL_RUN_PHASES, RunObservation, RunPlan, decide_run, invalid_run
from .task import TaskPlan, TaskPolicy, decide_task

__all__ = [
    "FINAL_RUN_PHASES", "RETRYABLE", "MergeView", "PodView", "RunObservation", "RunPlan", "TaskPlan", "TaskPolicy",
    "Terminated", "decide_run", "decide_task", "invalid_run", "job_failure_message", "job_outcome",
    "parse_merge_report",
]
