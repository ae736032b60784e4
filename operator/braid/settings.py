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

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @classmethod
    def from_env(cls) -> Settings:
        return cls()
