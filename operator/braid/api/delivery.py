"""spec.delivery: what braid does with the integration branch once the merge has pushed it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .common import REF_NAME_CEL, Model, ref_name_problem

Provider = Literal["github", "gitlab", "gitea"]
GITHUB_API = "https://api.github.com"
# owner/name on GitHub and Gitea; on GitLab a project path, which may hold groups (group/sub/name)
REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$"
API_URL_PATTERN = r"^https?://[^\s/@]+(/[^\s@]*)?$"


class SecretKeyRef(Model):
    name: str = Field(min_length=1, max_length=253, description="The Secret, in the run's namespace.")
    key: str = Field("token", min_length=1, max_length=253, description="Its key holding the token.")


class PullRequestSpec(Model):
    """One pull request (GitLab: merge request) from the integration branch, opened once and updated after."""

    provider: Provider = Field(description="The forge: github, gitlab or gitea.")
    url: str | None = Field(
        None, max_length=2048, pattern=API_URL_PATTERN,
        description=f"Where the forge's API is. github: the API URL, default {GITHUB_API} (GitHub Enterprise: "
        "https://ghe.example.com/api/v3); gitlab: the instance, https://gitlab.example.com; gitea: the server, "
        "https://gitea.example.com. Required for gitlab and gitea.",
    )
    repository: str = Field(
        min_length=3, max_length=512, pattern=REPOSITORY_PATTERN,
        description="owner/name (GitLab: the project path, group/sub/name) the pull request is opened in; the "
        "integration branch must be pushed there (spec.repo.url).",
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": r"!self.matches('(^|/)\\.\\.?(/|$)')", "message": "no path component may be '.' or '..'"}]},
    )
    base: str | None = Field(
        None, min_length=1, max_length=255, description="The branch to merge into. Default spec.repo.baseRef.",
        json_schema_extra={"x-kubernetes-validations": REF_NAME_CEL},
    )
    title: str | None = Field(None, min_length=1, max_length=255, description="Default 'braid: <run>'.")
    draft: bool = Field(False, description="Open it as a draft (Gitea: a 'WIP: ' title).")
    token_secret: SecretKeyRef | None = Field(
        None, description="Cluster: the Secret key holding the API token. Local runs read it from "
        "--pr-token-file or $BRAID_PR_TOKEN instead.",
    )

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "self.provider == 'github' || has(self.url)",
                 "message": "spec.delivery.pullRequest.url is required for gitlab and gitea"},
            ]
        }
    }

    @field_validator("repository")
    @classmethod
    def _valid_repository(cls, repository: str) -> str:
        if any(part in (".", "..") for part in repository.split("/")):
            raise ValueError("no path component may be '.' or '..'")
        return repository

    @field_validator("base")
    @classmethod
    def _valid_base(cls, base: str | None) -> str | None:
        if base is not None and (problem := ref_name_problem(base)):
            raise ValueError(problem)
        return base

    @model_validator(mode="after")
    def _url_for_provider(self) -> PullRequestSpec:
        if self.url is None and self.provider != "github":
            raise ValueError(f"spec.delivery.pullRequest.url is required for provider {self.provider} "
                             "(the forge's API base URL)")
        return self

    @property
    def api_url(self) -> str:
        return (self.url or GITHUB_API).rstrip("/")


class DeliverySpec(Model):
    pull_request: PullRequestSpec | None = Field(
        None, description="After the merge has pushed the integration branch, open one pull request from it, or "
        "update the one braid opened before: a re-run never opens a second.",
    )


class TaskCost(Model):
    """A task's line in the pull request's body."""

    task: str
    phase: str
    cost_usd: float = Field(0.0, alias="costUSD")
    tokens: int = 0
