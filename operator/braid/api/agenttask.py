"""AgentTask: one task of a ParallelRun, fully resolved, as the runner executes it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import AGENT_TASK_NAME_PATTERN, API_VERSION, COMMIT_PATTERN, RESOLVER_SUFFIX, TASK_NAME_MAX, Model
from .parallelrun import AgentSpec, Budget, ObjectMeta, RepoSpec, ResourceRequirements, RetryPolicy, TaskName
from .status import Condition, RiskSeen, TaskStatus, Usage


class SkipRequest(Model):
    """The ParallelRun's decision that a task will never run."""

    reason: str = Field(max_length=128)
    message: str = Field(max_length=1024)


class AgentTaskSpec(Model):
    run: str = Field(min_length=1, max_length=63, description="Name of the owning ParallelRun.")
    task: str = Field(
        min_length=1, max_length=TASK_NAME_MAX + len(RESOLVER_SUFFIX), pattern=AGENT_TASK_NAME_PATTERN,
        description="The task, or <task>.resolve for the resolver of a task's merge conflicts.",
    )
    resolves: TaskName | None = Field(
        None, description="Set on a resolver: the task whose conflicts with the integration it resolves."
    )
    prompt: str = Field(min_length=1, max_length=65536)
    depends_on: list[TaskName] = Field(default_factory=list, max_length=64)
    paths: list[str] = Field(default_factory=list, max_length=64)
    repo: RepoSpec
    branch: str = Field(max_length=255, description="The task's own branch, braid/<run>/tasks/<task>.")
    dependency_branches: list[str] = Field(
        default_factory=list, max_length=64, description="Branches merged into the task branch before the agent starts."
    )
    last_pushed: str | None = Field(
        None,
        pattern=COMMIT_PATTERN,
        description="The commit braid last pushed to the task branch (the task's status.commit). The launcher sets "
        "it in each attempt's copy of the spec; an attempt resumes the branch only while it holds exactly this "
        "commit, and a branch braid has no record of is never adopted: the task fails with BranchExists.",
    )
    last_transcript: str | None = Field(
        None,
        pattern=COMMIT_PATTERN,
        description="The commit braid last pushed to the task's transcript ref refs/braid/<run>/transcripts/<task> "
        "(the task's status.transcript). An attempt continues the saved conversation, and replaces it, only while "
        "the ref holds exactly this commit (or does not exist); a ref braid has no record of is neither read nor "
        "overwritten.",
    )
    spent: Usage | None = Field(
        None,
        description="What the task's earlier attempts spent, as the launcher counted them (the task's status.usage); "
        "`budget` is the share less this. A resumed conversation's own record of what it spent counts where it is "
        "more.",
    )
    agent: AgentSpec = Field(default_factory=AgentSpec, description="Run defaults with the task's overrides applied.")
    resources: ResourceRequirements | None = None
    timeout_seconds: int = Field(3600, ge=1)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    budget: Budget | None = Field(None, description="This task's share of the run budget.")
    suspend: bool = Field(
        False,
        description="While true no pod runs. The ParallelRun clears it when the task's dependencies have "
        "succeeded and a slot and budget are free, and sets it again while the run is suspended.",
    )
    skip: SkipRequest | None = Field(
        None, description="Set by the ParallelRun when the task can never run; the task then ends Skipped."
    )
    cancel: bool = Field(
        False, description="Set by the ParallelRun when it is cancelled: the pod stops, its work is pushed, and "
        "the task ends Cancelled (or Succeeded, when the attempt finished first)."
    )


class AgentTaskStatus(TaskStatus):
    observed_generation: int | None = None
    failures: int = Field(0, description="Failed attempts counted against retry.limit.")
    interruptions: int = Field(
        0, description="Attempts lost to eviction, node loss or a deleted pod; not counted against retry.limit."
    )
    usage_attempts: int = Field(0, description="Attempts whose usage is included in usage.")
    transcript: str | None = Field(
        None, description="The commit braid last pushed to the task's transcript ref (anthropic backend): the "
        "saved conversation a later attempt continues.",
    )
    conflict_risk: list[RiskSeen] = Field(
        default_factory=list, description="The other task branches the succeeding attempt's commit conflicts with."
    )
    conflict_risk_truncated: bool = False
    conditions: list[Condition] = Field(default_factory=list)
    attempt_started_at: str | None = None
    next_attempt_at: str | None = None


class AgentTaskMeta(ObjectMeta):
    # <run>-<task>: longer than a run name may be
    name: str = Field(min_length=1, max_length=253)


class AgentTask(Model):
    api_version: Literal["braid.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["AgentTask"] = "AgentTask"
    metadata: AgentTaskMeta
    spec: AgentTaskSpec
    status: AgentTaskStatus | None = None
