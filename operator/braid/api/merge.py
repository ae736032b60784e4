"""What `braid merge` is asked to do: the input of the merge Job and of local mode's last step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import COMMIT_PATTERN, Model
from .delivery import PullRequestSpec, TaskCost
from .parallelrun import RepoSpec, ResolveRule, VerifySpec
from .status import Resolution


class MergeTask(Model):
    name: str
    branch: str
    depends_on: list[str] = Field(default_factory=list)


class MergeRequest(Model):
    run: str
    repo: RepoSpec
    integration_branch: str
    on_conflict: Literal["continue", "stop"] = "continue"
    resolve: list[ResolveRule] = Field(default_factory=list, description="spec.merge.resolve.")
    tasks: list[MergeTask] = Field(description="Succeeded tasks, to be merged.")
    verify: VerifySpec | None = None
    on_verify_failure: Literal["report", "exclude"] = "report"
    not_merged: list[str] = Field(default_factory=list, description="Tasks that did not succeed, for the report.")
    round: int = Field(1, ge=1, description="1, then one more after each set of resolver tasks.")
    resolutions: list[Resolution] = Field(
        default_factory=list, description="Conflicts resolver tasks took in earlier rounds; each task gets one."
    )
    resolution_records: dict[str, str] = Field(
        default_factory=dict, description="Task -> the commit braid last pushed to its resolution branch, in an "
        "earlier run: the one tip a new resolution branch may replace."
    )
    last_pushed: str | None = Field(
        None,
        pattern=COMMIT_PATTERN,
        description="The commit braid itself last pushed to the integration branch for this run (the run's "
        "status.merge.lastPushed): the one tip the merge may replace other than by a fast-forward.",
    )
    pull_request: PullRequestSpec | None = Field(
        None, description="spec.delivery.pullRequest: opened or updated once the integration branch is pushed.")
    costs: list[TaskCost] = Field(default_factory=list, description="Every task's phase and spend, for the pull "
                                  "request's body.")
