"""Security contexts that pass the `restricted` Pod Security Standard."""

from __future__ import annotations

from typing import Any

from braid.settings import Settings


def pod_security_context(settings: Settings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        "fsGroup": settings.fs_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def placement(settings: Settings) -> dict[str, Any]:
    """runtimeClassName, schedulerName, nodeSelector and tolerations when the settings ask for them."""
    out: dict[str, Any] = {}
    if settings.runtime_class_name:
        out["runtimeClassName"] = settings.runtime_class_name
    if settings.scheduler_name:
        out["schedulerName"] = settings.scheduler_name
    if settings.node_selector:
        out["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        out["tolerations"] = [dict(t) for t in settings.tolerations]
    return out
