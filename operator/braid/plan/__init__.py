"""Pure scheduling: DAG checks, priorities, what may start now."""

from .dag import Node, PlanError, critical_path, find_cycle, nodes_of, topological_order, upstream, validate
from .schedule import ENDED, RETRYABLE, Decision, Skip, decide

__all__ = [
    "ENDED", "RETRYABLE", "Decision", "Node", "PlanError", "Skip", "critical_path", "decide", "find_cycle", "nodes_of",
    "topological_order", "upstream", "validate",
]

from .budget import Spend, exhausted, spent, task_share  # noqa: E402

__all__ += ["Spend", "exhausted", "spent", "task_share"]
