"""Status shapes shared by ParallelRun, AgentTask, local mode and the merge report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import COMMIT_PATTERN, Model

RunPhase = Literal["Pending", "Running", "Suspended", "Merging", "Succeeded", "Conflicted", "Failed", "Cancelled"]
TaskPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Skipped", "Cancelled"]
MergePhase = Literal["Pending", "Running", "Resolving", "Succeeded", "Conflicted", "Failed", "Skipped"]
ConflictKind = Literal["content", "add/add", "modify/delete", "rename", "file/directory", "binary", "mode", "other"]

ENDED_TASK_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Skipped", "Cancelled"})


class Usage(Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = Field(0.0, alias="costUSD")
    unpriced_tokens: int | None = Field(
        None, ge=0, description="Tokens braid knows no price for (an unknown model, or an agent that reported tokens but no "
        "cost): costUSD leaves them out, so it is a lower bound. Absent when every token is priced."
    )

    def __add__(self, other: Usage) -> Usage:
        unpriced = None
        if self.unpriced_tokens is not None or other.unpriced_tokens is not None:
            unpriced = (self.unpriced_tokens or 0) + (other.unpriced_tokens or 0)
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
            unpriced_tokens=unpriced,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens


class ResourceUsage(Model):
    """CPU and memory of a task's agent as a local run measures them (not set on the cluster:
    `kubectl top pod` shows a pod's)."""

    enforced_by: Literal["cgroup v2", "cgroup v1", "rlimit", "none"] = Field(
        description="What holds the agent to its limits: a cgroup of its own, RLIMIT_AS (memory only), or nothing."
    )
    cpu_cores: float = Field(0.0, description="CPU in use over the last second, in cores (0.1 is 100m).")
    cpu_seconds: float = Field(0.0, description="CPU time the agent's processes used in this attempt.")
    cpu_throttled_seconds: float | None = Field(
        None, description="Time the agent waited because of its CPU limit (cgroups only)."
    )
    memory_bytes: int = Field(0, description="Memory in use now (the cgroup's charge, or the processes' RSS).")
    memory_peak_bytes: int = Field(0, description="The most memory in use at once in this attempt.")
    sampled_at: str | None = None


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    observed_generation: int | None = None


class TaskStatus(Model):
    phase: TaskPhase = "Pending"
    branch: str | None = None
    commit: str | None = None
    attempts: int = 0
    pod: str | None = None
    reason: str | None = None
    message: str | None = None
    changed_files: list[str] | None = None
    usage: Usage | None = None
    resource_usage: ResourceUsage | None = Field(
        None, description="Local runs: CPU and memory of the running (or last) attempt's agent, as last measured."
    )
    started_at: str | None = None
    finished_at: str | None = None


class ConflictFile(Model):
    path: str
    kind: ConflictKind
    collides_with: list[str] = Field(default_factory=list, description="Merged tasks that changed this path too.")
    message: str | None = None
    resolution: str | None = Field(
        None, description="How braid resolved this conflict: 'rule union' (a spec.merge.resolve rule), 'agent "
        "<task>.resolve at <commit>' (a resolver task); absent: it was not resolved."
    )


class RiskFile(Model):
    path: str
    kind: ConflictKind


MAX_RISK_FILES = 10
"""Files kept per conflicting pair."""
MAX_RISK_PAIRS = 20
"""Pairs kept in a task's result and in the run's status."""


class RiskSeen(Model):
    """What a task saw when it succeeded: its commit conflicts with another task's branch at `commit`."""

    task: str
    commit: str
    files: list[RiskFile] = Field(default_factory=list, max_length=MAX_RISK_FILES)


class ConflictRisk(Model):
    """Two succeeded tasks whose branches conflict with each other, found before the merge."""

    tasks: list[str] = Field(min_length=2, max_length=2, description="The two tasks, in name order.")
    files: list[RiskFile] = Field(default_factory=list, description="Where they conflict (at most 10 files).")


class Conflict(Model):
    task: str
    collides_with: list[str] = Field(default_factory=list)
    files: list[ConflictFile] = Field(default_factory=list)
    reason: Literal["UnrelatedHistory"] | None = Field(
        None, description="Set when the branch as a whole cannot be merged (files is empty then): UnrelatedHistory, "
        "its history has nothing in common with the base."
    )
    message: str | None = None


VerifyPhase = Literal["Passed", "Failed", "TimedOut"]
VERIFY_OUTPUT_LIMIT = 4096
"""Bytes of a verify run's output kept in the status: its last ones."""


class VerifyRun(Model):
    """One run of spec.merge.verify, on a prefix of the merge order."""

    tasks: list[str] = Field(default_factory=list, description="The merged tasks this commit holds, in merge order.")
    commit: str
    phase: VerifyPhase
    exit_code: int | None = None
    duration_seconds: float = 0.0


class VerifiedPrefix(Model):
    tasks: list[str] = Field(default_factory=list, description="The tasks merged in this prefix, in merge order.")
    commit: str


class Culprit(Model):
    """A task bisection found to break verification, and the evidence."""

    task: str
    last_passed: VerifiedPrefix = Field(description="The longest prefix of the merge order that passed (the base "
                                       "when no task is in it; the base is taken to pass).")
    first_failed: VerifiedPrefix = Field(description="The shortest prefix that failed: last_passed plus the culprit.")
    excluded: list[str] = Field(default_factory=list, description="onVerifyFailure exclude: the culprit and every "
                                "task depending on it, left out of the integration branch.")
    output: str | None = Field(None, description="The end of the first failing run's output.")


class Verification(Model):
    phase: VerifyPhase = Field(description="How the last verify run of the pushed result went (exclude: of the "
                               "rebuilt result).")
    commit: str | None = None
    exit_code: int | None = None
    duration_seconds: float = 0.0
    output: str | None = Field(
        None, description="The last 4 KiB of that run's output (stdout and stderr), control characters escaped, "
        "secrets redacted."
    )
    culprits: list[Culprit] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list, description="Tasks not merged because verification failed.")
    runs: list[VerifyRun] = Field(default_factory=list, description="Every verify run, in the order made.")
    message: str | None = None


class Resolution(Model):
    """A task's conflicts handed to a resolver task (spec.merge.resolve strategy agent), and what became of it."""

    task: str = Field(description="The conflicting task.")
    resolver: str = Field(description="The resolver task, <task>.resolve.")
    branch: str = Field(description="The resolution branch, braid/<run>/resolve/<task>.")
    prepared: str = Field(pattern=COMMIT_PATTERN, description="The commit braid pushed there: the integration so "
                          "far merged with the task's branch, conflict markers committed.")
    files: list[str] = Field(default_factory=list, description="The conflicting files.")
    collides_with: list[str] = Field(default_factory=list)
    rule: int = Field(0, ge=0, description="The spec.merge.resolve rule (its index) that took the conflict.")
    round: int = Field(1, ge=1, description="The merge round that prepared it; the next round merges the result.")
    commit: str | None = Field(
        None, pattern=COMMIT_PATTERN, description="The resolver's pushed result, once it succeeded."
    )
    message: str | None = Field(None, max_length=1024, description="Why the resolver did not succeed.")


class PullRequestStatus(Model):
    """spec.delivery.pullRequest's outcome. A failed delivery leaves the merge and the pushed branch as they are."""

    provider: str
    phase: Literal["Succeeded", "Failed"]
    action: Literal["Opened", "Updated", "Unchanged"] | None = Field(
        None, description="Opened: braid opened it now; Updated: it was open and its title or body changed; "
        "Unchanged: it was open as it should be.")
    number: int | None = None
    url: str | None = None
    message: str | None = None


class MergeStatus(Model):
    phase: MergePhase = Field(
        "Pending", description="Resolving: conflicts were handed to resolver tasks; the merge runs again (round + 1) "
        "once they end."
    )
    branch: str | None = None
    round: int = Field(1, ge=1, description="Which merge this is: 1, then one more after each set of resolvers.")
    resolutions: list[Resolution] = Field(
        default_factory=list, description="Conflicts handed to resolver tasks, in this round and earlier ones."
    )
    merged: list[str] = Field(default_factory=list)
    not_merged: list[str] = Field(default_factory=list, description="Tasks left out: failed, skipped or conflicting.")
    conflicts: list[Conflict] = Field(default_factory=list)
    conflict_count: int = 0
    resolved: list[Conflict] = Field(
        default_factory=list, description="Conflicts of merged tasks that spec.merge.resolve rules resolved, each "
        "file with its resolution."
    )
    left_out_conflicts: list[ConflictRisk] = Field(
        default_factory=list, description="Pairs of tasks, both left out of the integration branch, whose branches "
        "also conflict with each other (at most 20 pairs)."
    )
    commit: str | None = None
    last_pushed: str | None = Field(
        None,
        description="The commit braid itself last pushed to the integration branch for this run: a later merge may "
        "replace the branch only while it holds this commit (or fast-forward it).",
    )
    verification: Verification | None = Field(None, description="spec.merge.verify's outcome.")
    pull_request: PullRequestStatus | None = Field(None, description="spec.delivery.pullRequest's outcome.")
    message: str | None = None


class Counts(Model):
    total: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0


class ParallelRunStatus(Model):
    phase: RunPhase = "Pending"
    observed_generation: int | None = None
    progress: str | None = Field(None, description="Ended tasks / all tasks, e.g. 3/6.")
    counts: Counts = Field(default_factory=Counts)
    tasks: dict[str, TaskStatus] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    merge: MergeStatus | None = None
    resolvers: dict[str, TaskStatus] = Field(
        default_factory=dict, description="Resolver tasks (spec.merge.resolve strategy agent), by the task whose "
        "conflict each resolves."
    )
    conflict_risk: list[ConflictRisk] = Field(
        default_factory=list, description="Pairs of succeeded tasks whose branches would conflict, found as each "
        "task succeeds (before the merge); pairs where one task depends on the other are not checked."
    )
    conflict_risk_truncated: bool = Field(False, description="Some pairs or files were left out of conflictRisk.")
    conditions: list[Condition] = Field(default_factory=list)
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    def recount(self) -> None:
        counts = Counts(total=len(self.tasks))
        for task in self.tasks.values():
            key = task.phase.lower()
            setattr(counts, key, getattr(counts, key) + 1)
        self.counts = counts
        ended = counts.succeeded + counts.failed + counts.skipped + counts.cancelled
        self.progress = f"{ended}/{counts.total}"
        usage = Usage()
        for task in [*self.tasks.values(), *self.resolvers.values()]:
            if task.usage:
                usage = usage + task.usage
        self.usage = usage
