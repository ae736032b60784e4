"""The operator's decisions: pure functions from observed objects to a plan. No I/O, no kopf.

What both launchers decide alike lives in braid.plan; these modules add only the cluster's part.
"""

from braid.plan import TaskPolicy

from .observe import MergeView, PodView, Terminated, job_failure_message, job_outcome, parse_merge_report, task_view
from .run import RunObservation, RunPlan, decide_run, invalid_run
from .task import TaskPlan, decide_task

__all__ = [
    "MergeView", "PodView", "RunObservation", "RunPlan", "TaskPlan", "TaskPolicy",
    "Terminated", "decide_run", "decide_task", "invalid_run", "job_failure_message", "job_outcome",
    "parse_merge_report", "task_view",
]
