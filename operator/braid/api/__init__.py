"""Pydantic models of the braid.dev/v1alpha1 API: the one source of the CRD schemas."""

from .agenttask import AgentTask, AgentTaskSpec, AgentTaskStatus
from .common import API_VERSION, GROUP, VERSION, default_integration_branch, ref_name_problem, task_branch
from .errors import InvalidSpec, format_validation_error, load_parallelrun
from .parallelrun import (
    AgentSpec,
    Budget,
    MergeSpec,
    ParallelRun,
    ParallelRunSpec,
    Pricing,
    RepoSpec,
    RetryPolicy,
    ScriptSpec,
    ScriptStep,
    TaskSpec,
)
from .status import (
    ENDED_TASK_PHASES,
    Conflict,
    ConflictFile,
    Counts,
    MergeStatus,
    ParallelRunStatus,
    TaskStatus,
    Usage,
)

__all__ = [
    "API_VERSION", "GROUP", "VERSION", "AgentSpec", "AgentTask", "AgentTaskSpec", "AgentTaskStatus", "Budget",
    "Conflict", "ConflictFile", "Counts", "ENDED_TASK_PHASES", "InvalidSpec", "MergeSpec", "MergeStatus",
    "ParallelRun", "ParallelRunSpec", "ParallelRunStatus", "Pricing", "RepoSpec", "RetryPolicy", "ScriptSpec",
    "ScriptStep", "TaskSpec", "TaskStatus", "Usage", "default_integration_branch", "format_validation_error",
    "load_parallelrun", "ref_name_problem", "task_branch",
]
