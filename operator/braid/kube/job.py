"""The merge Job: `braid merge` in the runner image, once every task has ended."""

from __future__ import annotations

import json
from typing import Any

from braid.api import MergeRequest, ParallelRun
from braid.settings import Settings

from . import labels
from .agenttask import run_owner
from .names import merge_job_name, merge_report_name
from .pod import (
    CACHE,
    TERMINATION_LOG,
    TMP,
    add_git_credentials,
    base_mounts,
    cache_volume,
    resources,
    runner_pod_spec,
    tmp_volume,
)

CONTAINER = "merge"
REPORT_KEY = "report.json"
# `braid merge` exits 2 when its request is invalid: retrying cannot help
EXIT_INVALID = 2


def merge_job(run: ParallelRun, request: MergeRequest, settings: Settings) -> dict[str, Any]:
    command = ["braid", "merge", "--cache-dir", f"{CACHE}/git", "--report", TERMINATION_LOG]
    mounts = base_mounts()
    volumes = [cache_volume(settings), tmp_volume(settings)]
    add_git_credentials(run.spec.repo.credentials_secret, command, mounts, volumes)
    container = {
        "name": CONTAINER,
        "image": settings.runner_image,
        "command": command,
        "workingDir": TMP,
        "env": [
            {"name": "BRAID_MERGE_REQUEST", "value": json.dumps(request.wire(), separators=(",", ":"))},
            {"name": "BRAID_MERGE_REPORT_CONFIGMAP", "value": merge_report_name(run.name)},
        ],
        "resources": resources(None, settings),
        "volumeMounts": mounts,
    }
    # a token only when a ServiceAccount may write the report ConfigMap
    pod_spec = runner_pod_spec(container, volumes, settings,
                               automountServiceAccountToken=bool(settings.merge_service_account))
    if settings.merge_service_account:
        pod_spec["serviceAccountName"] = settings.merge_service_account
    job_labels = labels.common(run.name, labels.MERGE)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": merge_job_name(run.name),
            "namespace": run.metadata.namespace,
            "labels": job_labels,
            "ownerReferences": [run_owner(run)],
        },
        "spec": {
            "backoffLimit": settings.merge_backoff_limit,
            "activeDeadlineSeconds": settings.merge_timeout_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_INVALID]},
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {"metadata": {"labels": dict(job_labels)}, "spec": pod_spec},
        },
    }


def merge_report_configmap(run: ParallelRun) -> dict[str, Any]:
    """Empty until a merge report too large for a termination message is written into it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": merge_report_name(run.name),
            "namespace": run.metadata.namespace,
            "labels": labels.common(run.name, labels.MERGE_REPORT),
            "ownerReferences": [run_owner(run)],
        },
        "data": {},
    }
