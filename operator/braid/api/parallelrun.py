"""ParallelRun: a repository, a DAG of coding tasks, and how to run and merge them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .common import (
    API_VERSION,
    NAME_PATTERN,
    REF_NAME_CEL,
    RUN_NAME_MAX,
    TASK_NAME_MAX,
    URL_CEL,
    Model,
    default_integration_branch,
    ref_name_problem,
    refs_collide,
    task_branch,
    url_problem,
)
from .delivery import DeliverySpec
from .quantity import Quantity, parse_quantity
from .status import ParallelRunStatus

Backend = Literal["anthropic", "command", "script"]
Strategy = Literal["criticalPath", "priority", "fifo", "costFirst"]
TaskName = Annotated[str, Field(min_length=1, max_length=TASK_NAME_MAX, pattern=NAME_PATTERN)]

DEFAULT_MODEL = "claude-sonnet-4-6"


class RepoSpec(Model):
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Git URL of the repository (https://, ssh://, git://, file:// or, in local mode, a path).",
        json_schema_extra={"x-kubernetes-validations": URL_CEL},
    )
    base_ref: str = Field(
        "main",
        min_length=1,
        max_length=255,
        description="Branch, tag or commit every task branch starts from.",
        json_schema_extra={"x-kubernetes-validations": REF_NAME_CEL[:2]},
    )
    credentials_secret: str | None = Field(
        None,
        max_length=253,
        description="Secret with git credentials (keys username/password, or ssh-privatekey and known_hosts).",
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        if problem := url_problem(url):
            raise ValueError(problem)
        return url

    @field_validator("base_ref")
    @classmethod
    def _valid_base_ref(cls, ref: str) -> str:
        if ref.startswith("-"):
            raise ValueError("must not begin with '-'")
        return ref


class ScriptStep(Model):
    """One deterministic edit of the `script` backend."""

    op: Literal["write", "append", "replace", "delete", "require", "sleep", "fail"] = Field(
        description="write/append content to path, replace old with new in path, delete path, "
        "require that path exists, sleep seconds, or fail with message."
    )
    path: str | None = Field(None, max_length=1024)
    content: str | None = Field(None, max_length=65536)
    old: str | None = Field(None, max_length=65536)
    new: str | None = Field(None, max_length=65536)
    seconds: float | None = Field(None, ge=0, le=3600)
    message: str | None = Field(None, max_length=1024)

    @model_validator(mode="after")
    def _fields_for_op(self) -> ScriptStep:
        needs = {
            "write": ("path", "content"),
            "append": ("path", "content"),
            "replace": ("path", "old", "new"),
            "delete": ("path",),
            "require": ("path",),
            "sleep": ("seconds",),
            "fail": (),
        }[self.op]
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"op {self.op!r} needs {', '.join(missing)}")
        return self


class ScriptSpec(Model):
    steps: list[ScriptStep] = Field(default_factory=list, max_length=200)


class Pricing(Model):
    """USD per million tokens, overriding the built-in table for one model."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float | None = Field(None, ge=0, description="Defaults to 1.25 x input.")
    cache_read: float | None = Field(None, ge=0, description="Defaults to 0.1 x input.")


class AgentSpec(Model):
    """How a task's agent runs. Run-level values are defaults; a task's own `agent` overrides them."""

    backend: Backend | None = Field(None, description="anthropic (default), command or script.")
    model: str | None = Field(None, max_length=128)
    api_key_secret: str | None = Field(None, max_length=253, description="Secret holding the API key (key api-key).")
    image: str | None = Field(None, max_length=512, description="Container image for the agent pod.")
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None, max_length=64, description="argv of the agent CLI (backend command); the prompt arrives on stdin."
    )
    env: dict[str, Annotated[str, Field(max_length=4096)]] | None = Field(
        None, description="Extra environment for the agent process. Never put secrets here."
    )
    max_turns: int | None = Field(None, ge=1, le=1000)
    max_tokens: int | None = Field(None, ge=1, le=128000, description="Maximum output tokens per response.")
    system_prompt: str | None = Field(None, max_length=20000, description="Added to braid's system prompt.")
    pricing: dict[str, Pricing] | None = Field(None, description="Price table overrides by model name.")
    script: ScriptSpec | None = Field(None, description="Edits for backend script (demos and tests).")

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str] | None) -> dict[str, str] | None:
        for name in env or {}:
            if not name or not (name[0].isalpha() or name[0] == "_") or not all(c.isalnum() or c == "_" for c in name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return env

    def overlaid(self, override: AgentSpec | None) -> AgentSpec:
        """These defaults with every field `override` sets taking precedence."""
        if override is None:
            return self.model_copy(deep=True)
        data = self.model_dump(exclude_none=True)
        data.update(override.model_dump(exclude_none=True))
        return AgentSpec.model_validate(data)

    @property
    def effective_backend(self) -> Backend:
        return self.backend or "anthropic"

    @property
    def effective_model(self) -> str:
        return self.model or DEFAULT_MODEL


class ResourceRequirements(Model):
    """Requests and limits of the agent, in Kubernetes quantities (`cpu: 500m`, `memory: 20Mi`).

    On the cluster they are the agent container's; locally `limits.memory` and `limits.cpu`
    (and `requests.cpu` as a relative weight) are applied to the agent's processes.
    """

    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None

    def overlaid(self, override: ResourceRequirements | None) -> ResourceRequirements:
        """These with every request and limit `override` names replaced by its value."""
        if override is None:
            return self.model_copy(deep=True)
        requests = {**(self.requests or {}), **(override.requests or {})}
        limits = {**(self.limits or {}), **(override.limits or {})}
        # both sides are checked already; their union is checked where it is used (ParallelRun)
        return ResourceRequirements.model_construct(requests=requests or None, limits=limits or None)

    def request_over_limit(self) -> str | None:
        """Why these cannot be a container's resources (a request above its limit), or None."""
        for name, request in (self.requests or {}).items():
            limit = (self.limits or {}).get(name)
            if limit is None:
                continue
            req, lim = parse_quantity(request), parse_quantity(limit)
            if req is not None and lim is not None and req > lim:
                return f"requests.{name} ({request}) is more than limits.{name} ({limit})"
        return None

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        if problem := self.request_over_limit():
            raise ValueError(problem)
        return self


class Budget(Model):
    max_cost_usd: float | None = Field(None, alias="maxCostUSD", gt=0, description="Stop spending at this many USD.")
    max_tokens: int | None = Field(None, gt=0, description="Stop at this many input+output tokens.")


class RetryPolicy(Model):
    limit: int = Field(2, ge=0, le=10, description="Extra attempts after a failed one.")
    backoff_seconds: int = Field(30, ge=0, le=3600)


class ResolveRule(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "self.strategy == 'agent' || (!has(self.prompt) && !has(self.agent))",
                 "message": "prompt and agent are for strategy agent"}
            ]
        }
    }

    paths: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=lambda: ["**"], min_length=1, max_length=64,
        description="Glob patterns, matched by braid (never by a shell): a pattern without '/' matches the file's "
        "name at any depth (CHANGELOG.md), one with '/' the whole path from the repository root (docs/*.md); '*' and "
        "'?' stay within one directory, '**' spans directories. Default: every path.",
    )
    strategy: Literal["union", "ours", "theirs", "agent"] = Field(
        description="How a conflict in a matching file is resolved. union, ours, theirs: a content conflict, with "
        "git merge-file (union keeps both sides' lines, for CHANGELOG-style additions; ours the integration branch's "
        "side; theirs the task's side). agent: an agent resolves the task's conflicts on a resolution branch "
        "(braid/<run>/resolve/<task>) as a resolver task; its result is merged when no conflict marker is left."
    )
    prompt: str | None = Field(
        None, max_length=8192,
        description="strategy agent: instructions added to the prompt braid writes from the conflict report.",
    )
    agent: AgentSpec | None = Field(
        None, description="strategy agent: the resolver's agent, over spec.agent (default: the conflicting task's).",
    )

    @model_validator(mode="after")
    def _agent_fields(self) -> ResolveRule:
        if self.strategy != "agent" and (self.prompt is not None or self.agent is not None):
            raise ValueError(f"prompt and agent are for strategy agent, not {self.strategy}")
        return self


class VerifySpec(Model):
    """A command that checks the integrated result (tests, a build); exit 0 means it passed."""

    command: list[Annotated[str, Field(max_length=4096)]] = Field(
        min_length=1, max_length=64,
        description="argv, run as given (no shell) in a checkout of the integration result, with no credentials "
        "and no API key in its environment.",
    )
    image: str | None = Field(
        None, max_length=512,
        description="Cluster: the image the command runs in (it must contain braid, like agent images). Default: "
        "braid's runner image. Local runs use the machine's own programs.",
    )
    timeout_seconds: int = Field(600, ge=1, le=24 * 3600, description="Each verify run is stopped after this long.")


class MergeSpec(Model):
    on_conflict: Literal["continue", "stop"] = Field(
        "continue", description="continue: skip a conflicting task and go on; stop: stop at the first conflict."
    )
    resolve: list[ResolveRule] = Field(
        default_factory=list, max_length=32,
        description="Per-path resolution rules for content conflicts, first matching rule wins. Every conflict a "
        "rule resolved stays in the report (status.merge.resolved) with how it was resolved.",
    )
    verify: VerifySpec | None = Field(
        None, description="Verify the integration result; when it fails, bisect the merge order to find the task "
        "that broke it."
    )
    on_verify_failure: Literal["report", "exclude"] = Field(
        "report", description="report: push the integration branch as built, the run fails (VerificationFailed); "
        "exclude: rebuild it without the culprits and the tasks depending on them, verify again, and push only a "
        "verified result."
    )


class SchedulingSpec(Model):
    strategy: Strategy = Field(
        "criticalPath",
        description="Which ready task takes a free slot first. criticalPath: the longest chain of tasks still "
        "to come; priority: the highest tasks[].priority (a task inherits the priority of the tasks waiting on "
        "it); fifo: the order of spec.tasks; costFirst: the lowest tasks[].estimatedCostUSD, else the shortest "
        "prompt. Ties go by priority, then name.",
    )


class TaskSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.dependsOn) || !self.dependsOn.exists(d, d == self.name)",
                    "message": "a task cannot depend on itself",
                }
            ]
        }
    }

    name: TaskName = Field(description="Lowercase letters, digits and '-'; names the task's branch.")
    prompt: str = Field(min_length=1, max_length=65536)
    depends_on: list[TaskName] = Field(default_factory=list, max_length=64)
    paths: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=64, description="Where in the repository the task is expected to work."
    )
    agent: AgentSpec | None = None
    priority: int | None = Field(
        None, ge=-1000, le=1000,
        description="Default 0. Higher starts first under strategy priority and breaks ties under the others.",
    )
    estimated_cost_usd: float | None = Field(
        None, alias="estimatedCostUSD", ge=0, le=1e6, description="What the task is expected to cost (strategy costFirst)."
    )
    resources: ResourceRequirements | None = Field(
        None, description="This task's requests and limits; each one it names replaces that of spec.resources."
    )

    @model_validator(mode="after")
    def _not_self_dependent(self) -> TaskSpec:
        if self.name in self.depends_on:
            raise ValueError(f"task {self.name!r} cannot depend on itself")
        return self


class ParallelRunSpec(Model):
    repo: RepoSpec
    integration_branch: str | None = Field(
        None,
        max_length=255,
        description="Branch the merged result is pushed to. Default braid/<run>/merged.",
        json_schema_extra={"x-kubernetes-validations": REF_NAME_CEL},
    )
    max_parallel: int = Field(4, ge=1, le=256)
    agent: AgentSpec = Field(default_factory=AgentSpec)
    resources: ResourceRequirements | None = None
    budget: Budget | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    task_timeout_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)
    merge: MergeSpec = Field(default_factory=MergeSpec)
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    delivery: DeliverySpec | None = Field(
        None, description="What braid does with the integration branch after the merge pushed it.")
    suspend: bool = Field(False, description="Stop running tasks and start none; set back to false to resume.")
    cancel: bool = Field(
        False,
        description="Stop every agent (what each wrote is pushed), start and merge nothing: the run ends Cancelled. "
        "Cannot be undone.",
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": "self || !oldSelf", "message": "a cancelled run cannot be resumed; create a new one"}]},
    )
    tasks: list[TaskSpec] = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.all(t, self.exists_one(u, u.name == t.name))", "message": "task names must be unique"}
            ]
        },
    )

    @field_validator("integration_branch")
    @classmethod
    def _valid_integration_branch(cls, branch: str | None) -> str | None:
        if branch is not None and (problem := ref_name_problem(branch)):
            raise ValueError(problem)
        return branch

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[TaskSpec]) -> list[TaskSpec]:
        seen: set[str] = set()
        for task in tasks:
            if task.name in seen:
                raise ValueError(f"task names must be unique: {task.name!r} appears more than once")
            seen.add(task.name)
        return tasks

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def agent_for(self, task: TaskSpec) -> AgentSpec:
        return self.agent.overlaid(task.agent)

    def resources_for(self, task: TaskSpec) -> ResourceRequirements | None:
        """The task's effective resources: spec.resources with each request and limit the task names replaced."""
        if self.resources is None and task.resources is None:
            return None
        return (self.resources or ResourceRequirements()).overlaid(task.resources)


class ObjectMeta(Model):
    model_config = Model.model_config | {"extra": "allow"}

    name: str = Field(min_length=1, max_length=RUN_NAME_MAX, pattern=NAME_PATTERN)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


_INTEGRATION_BRANCH_RULE = (
    "!has(self.spec.integrationBranch) || !("
    "('braid/' + self.metadata.name + '/tasks/').startsWith(self.spec.integrationBranch + '/') || "
    "self.spec.integrationBranch.startsWith('braid/' + self.metadata.name + '/tasks/'))"
)


class ParallelRun(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": _INTEGRATION_BRANCH_RULE,
                    "message": "spec.integrationBranch collides with the task branches braid/<run>/tasks/<task>",
                },
            ]
        }
    }

    api_version: Literal["braid.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["ParallelRun"] = "ParallelRun"
    metadata: ObjectMeta
    spec: ParallelRunSpec
    status: ParallelRunStatus | None = None

    @model_validator(mode="after")
    def _commands_given(self) -> ParallelRun:
        for i, task in enumerate(self.spec.tasks):
            agent = self.spec.agent_for(task)
            if agent.effective_backend == "command" and not agent.command:
                raise ValueError(f"spec.tasks[{i}].agent.command: task {task.name!r} uses backend command "
                                 "but gives no command (the agent CLI's argv, here or in spec.agent)")
        return self

    @model_validator(mode="after")
    def _effective_resources_valid(self) -> ParallelRun:
        for i, task in enumerate(self.spec.tasks):
            resources = self.spec.resources_for(task)
            problem = resources.request_over_limit() if resources is not None and task.resources else None
            if problem:
                raise ValueError(f"spec.tasks[{i}].resources: {problem} once spec.resources is applied")
        return self

    @model_validator(mode="after")
    def _integration_branch_apart(self) -> ParallelRun:
        branch = self.spec.integration_branch
        if branch is not None:
            prefix = f"braid/{self.metadata.name}/tasks"
            if refs_collide(branch, prefix) or prefix.startswith(branch + "/"):
                raise ValueError(
                    f"spec.integrationBranch {branch!r} collides with the task branches {prefix}/<task>; "
                    f"choose another name (default {default_integration_branch(self.metadata.name)})"
                )
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def integration_branch(self) -> str:
        return self.spec.integration_branch or default_integration_branch(self.name)

    def branch_of(self, task: str) -> str:
        return task_branch(self.name, task)

    @classmethod
    def from_manifest(cls, data: Any) -> ParallelRun:
        return cls.model_validate(data)
