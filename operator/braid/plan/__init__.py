"""The pure engine both launchers share: DAG checks, scheduling, budgets, attempts and the run's step."""

from .attempt import (
    RETRYABLE,
    AttemptEnd,
    TaskPolicy,
    add_usage,
    attempt_budget,
    attempt_ended,
    end_without_attempt,
    fail,
    retry_delay,
    start_attempt,
    task_conditions,
)
from .budget import BUDGET_EXCEEDED, Spend, exhausted, share_spent, spent, task_share
from .dag import Node, PlanError, critical_path, find_cycle, nodes_of, topological_order, upstream, validate
from .events import Event
from .schedule import ENDED, Decision, Skip, decide
from .step import FINAL_RUN_PHASES, Retry, Start, Step, TaskView, merge_request, step, summary
from .tasks import attempt_spec, task_spec

__all__ = [
    "BUDGET_EXCEEDED", "ENDED", "FINAL_RUN_PHASES", "RETRYABLE", "AttemptEnd", "Decision", "Event", "Node",
    "PlanError", "Retry", "Skip", "Spend", "Start", "Step", "TaskPolicy", "TaskView", "add_usage", "attempt_budget",
    "attempt_ended", "attempt_spec", "critical_path", "decide", "end_without_attempt", "exhausted", "fail",
    "find_cycle", "merge_request", "nodes_of", "retry_delay", "share_spent", "spent", "start_attempt", "step",
    "summary", "task_conditions", "task_share", "task_spec", "topological_order", "upstream", "validate",
]
