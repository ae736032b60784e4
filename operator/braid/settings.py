"""Operator settings: one object, read from the environment the Helm chart sets (prefix BRAID_)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRAID_", extra="ignore")

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to watch, comma-separated; empty = all."
    )
    runner_image: str = Field("braid-agent:0.1.0", description="Image of agent pods and the merge Job.")
    image_pull_policy: str = "IfNotPresent"
    runtime_class_name: str | None = None
    scheduler_name: str | None = Field(None, description="Scheduler of agent and merge pods; unset: the default.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict] = Field(default_factory=list)
    default_cpu_request: str = "500m"
    default_memory_request: str = "1Gi"
    default_cpu_limit: str = "2"
    default_memory_limit: str = "4Gi"
    workspace_size_limit: str = "10Gi"
    cache_pvc: str | None = Field(None, description="PVC holding the shared git object cache; emptyDir when unset.")
    workspace_storage_class: str | None = Field(None, description="Give each task a PVC workspace of this class.")
    service_account: str | None = Field(None, description="ServiceAccount of agent pods (token not mounted).")
    metrics_port: int = 8080
    health_port: int = 8081
    api_qps: float = 20.0
    api_burst: int = 40
    merge_timeout_seconds: int = 1800
    merge_backoff_limit: int = Field(2, description="Retries of the merge Job's pod after a crash or eviction.")
    merge_service_account: str | None = Field(
        None, description="ServiceAccount of the merge Job, allowed to write its report ConfigMap when the report "
        "is larger than a termination message; unset: no token is mounted and the operator reads the log instead."
    )
    tmp_size_limit: str = "1Gi"
    run_as_user: int = Field(10001, description="UID of agent and merge containers (the restricted policy wants one).")
    run_as_group: int = 10001
    fs_group: int = 10001
    termination_grace_seconds: int = Field(
        60, description="Time an agent gets after SIGTERM (suspend, deadline) to commit and push its work."
    )
    deadline_grace_seconds: int = Field(
        30, description="After timeoutSeconds plus this, the operator stops a pod the kubelet has not stopped."
    )
    max_interruptions: int = Field(
        5, description="Evictions and lost pods a task may suffer before it fails; they never count as retries."
    )
    workers: int = Field(8, ge=1, description="Objects reconciled at the same time.")
    resync_seconds: float = Field(300.0, gt=0, description="Every object is looked at again this often.")

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value
