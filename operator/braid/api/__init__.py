"""Pydantic models of the braid.dev/v1alpha1 API: the one source of the CRD schemas."""

from .agenttask import AgentTask, AgentTaskSpec, AgentTaskStatus, SkipRequest
from .common import (
    API_VERSION,
    GROUP,
    VERSION,
    default_integration_branch,
    ref_name_problem,
    resolution_branch,
    resolver_name,
    task_branch,
    transcript_ref,
)
from .delivery import DeliverySpec, PullRequestSpec, SecretKeyRef, TaskCost
from .errors import InvalidSpec, format_validation_error
from .load import load_parallelrun
from .merge import MergeRequest, MergeTask
from .parallelrun import (
    AgentSpec,
    Budget,
    MergeSpec,
    ParallelRun,
    ParallelRunSpec,
    Pricing,
    RepoSpec,
    ResolveRule,
    ResourceRequirements,
    RetryPolicy,
    ScriptSpec,
    ScriptStep,
    TaskSpec,
    VerifySpec,
)
from .result import TERMINATION_MESSAGE_LIMIT, TaskResult
from .status import (
    ENDED_TASK_PHASES,
    MAX_RISK_FILES,
    MAX_RISK_PAIRS,
    Conflict,
    ConflictFile,
    ConflictRisk,
    Counts,
    Culprit,
    MergeStatus,
    ParallelRunStatus,
    PullRequestStatus,
    Resolution,
    ResourceUsage,
    RiskFile,
    RiskSeen,
    TaskStatus,
    Usage,
    Verification,
    VerifiedPrefix,
    VerifyRun,
)
from .transcript import MAX_TRANSCRIPT_BYTES, TRANSCRIPT_FILE, Ended, InvalidTranscript, Transcript, parse_transcript

__all__ = [
    "API_VERSION", "AgentSpec", "AgentTask", "AgentTaskSpec", "AgentTaskStatus", "Budget", "Conflict",
    "ConflictFile", "Counts", "ENDED_TASK_PHASES", "GROUP", "InvalidSpec", "MergeRequest", "MergeSpec",
    "MergeStatus", "MergeTask", "Resolution", "ParallelRun", "ParallelRunSpec", "ParallelRunStatus", "Pricing", "RepoSpec",
    "ResourceRequirements", "ResourceUsage", "RetryPolicy", "ScriptSpec", "ScriptStep",
    "SkipRequest", "TERMINATION_MESSAGE_LIMIT", "TaskResult",
    "TaskSpec", "TaskStatus", "Usage", "Culprit", "Verification", "VerifiedPrefix", "VerifyRun", "VerifySpec",
    "VERSION", "default_integration_branch", "resolution_branch", "resolver_name", "format_validation_error",
    "load_parallelrun", "ref_name_problem", "task_branch", "transcript_ref",
    "MAX_RISK_FILES", "MAX_RISK_PAIRS", "ConflictRisk", "ResolveRule", "RiskFile", "RiskSeen",
    "DeliverySpec", "PullRequestSpec", "PullRequestStatus", "SecretKeyRef", "TaskCost",
    "MAX_TRANSCRIPT_BYTES", "TRANSCRIPT_FILE", "Ended", "InvalidTranscript", "Transcript", "parse_transcript",
]
