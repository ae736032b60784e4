"""The merge Job: `braid merge` in the runner image, once every task has ended."""

from __future__ import annotations

import json
from typing import Any

from braid.api import MergeRequest, ParallelRun
from braid.plan.verify import max_verify_runs
from braid.settings import Settings

from . import labels
from .agenttask import run_owner
from .names import merge_job_name, merge_report_name
from .pod import (
    CACHE,
    SECRET_MODE,
    TERMINATION_LOG,
    TMP,
    add_git_credentials,
    base_mounts,
    cache_volume,
    resources,
    runner_container_defaults,
    runner_pod_spec,
    tmp_volume,
)

CONTAINER = "merge"
VERIFY_CONTAINER = "verify"
VERIFY_DIR = "/verify"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
VERIFY_GRACE_SECONDS = 90
"""Per verify run, on top of its timeout: making the checkout, handing it over."""
PR_TOKEN_DIR = "/var/run/secrets/braid/pull-request"
REPORT_KEY = "report.json"
# `braid merge` exits 2 when its request is invalid: retrying cannot help
EXIT_INVALID = 2


def merge_job(run: ParallelRun, request: MergeRequest, settings: Settings) -> dict[str, Any]:
    command = ["braid", "merge", "--cache-dir", f"{CACHE}/git", "--report", TERMINATION_LOG]
    mounts = base_mounts()
    volumes = [cache_volume(settings), tmp_volume(settings)]
    add_git_credentials(run.spec.repo.credentials_secret, command, mounts, volumes)
    add_pr_token(request, command, mounts, volumes)
    container = {
        "name": CONTAINER,
        "image": settings.runner_image,
        "command": command,
        "workingDir": TMP,
        "env": [
            {"name": "BRAID_MERGE_REQUEST", "value": json.dumps(request.wire(), separators=(",", ":"))},
            {"name": "BRAID_MERGE_REPORT_CONFIGMAP", "value": merge_report_name(run.name, request.round)},
        ],
        "resources": resources(None, settings),
        "volumeMounts": mounts,
    }
    deadline = settings.merge_timeout_seconds
    verify = None
    if request.verify is not None:
        verify = _verify_container(request, settings, command, mounts, volumes)
        runs = max_verify_runs(len(request.tasks), request.on_verify_failure)
        deadline += runs * (request.verify.timeout_seconds + VERIFY_GRACE_SECONDS)
    # a token only when a ServiceAccount may write the report ConfigMap
    pod_spec = runner_pod_spec(container, volumes, settings,
                               automountServiceAccountToken=bool(settings.merge_service_account))
    if settings.merge_service_account:
        pod_spec["serviceAccountName"] = settings.merge_service_account
    if verify is not None:
        # a sidecar: it starts first and is stopped once the merge container has ended
        pod_spec["initContainers"] = [verify]
    job_labels = labels.common(run.name, labels.MERGE)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": merge_job_name(run.name, request.round),
            "namespace": run.metadata.namespace,
            "labels": job_labels,
            "ownerReferences": [run_owner(run)],
        },
        "spec": {
            "backoffLimit": settings.merge_backoff_limit,
            "activeDeadlineSeconds": deadline,
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


def add_pr_token(request: MergeRequest, command: list[str], mounts: list[dict[str, Any]],
                 volumes: list[dict[str, Any]]) -> None:
    """spec.delivery.pullRequest.tokenSecret's key as a file of the merge container only (not of verify's)."""
    ref = request.pull_request.token_secret if request.pull_request is not None else None
    if ref is None:
        return
    command += ["--pr-token-file", f"{PR_TOKEN_DIR}/token"]
    mounts.append({"name": "pr-token", "mountPath": PR_TOKEN_DIR, "readOnly": True})
    volumes.append({"name": "pr-token", "secret": {"secretName": ref.name, "defaultMode": SECRET_MODE,
                                                   "items": [{"key": ref.key, "path": "token"}]}})


def _verify_container(request: MergeRequest, settings: Settings, command: list[str], mounts: list[dict[str, Any]],
                      volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """spec.merge.verify's container: `braid verify-serve` in the verify image, seeing nothing but the
    checkouts the merge container hands it (no cache, no credentials, no ServiceAccount token)."""
    assert request.verify is not None
    command += ["--verify-handoff", VERIFY_DIR]
    mounts.append({"name": "verify", "mountPath": VERIFY_DIR})
    volumes += [{"name": "verify", "emptyDir": {"sizeLimit": settings.workspace_size_limit}},
                {"name": "verify-tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}},
                {"name": "no-token", "emptyDir": {"sizeLimit": "1Mi"}}]
    return {
        **runner_container_defaults(settings),
        "name": VERIFY_CONTAINER,
        "image": request.verify.image or settings.runner_image,
        "command": ["braid", "verify-serve", "--handoff", VERIFY_DIR],
        "restartPolicy": "Always",
        "workingDir": VERIFY_DIR,
        "env": [{"name": "HOME", "value": TMP}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": resources(None, settings),
        # an empty directory where the ServiceAccount token would be mounted keeps it out
        "volumeMounts": [{"name": "verify", "mountPath": VERIFY_DIR},
                         {"name": "verify-tmp", "mountPath": TMP},
                         {"name": "no-token", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True}],
    }


def merge_report_configmap(run: ParallelRun, round_: int = 1) -> dict[str, Any]:
    """Empty until a merge report too large for a termination message is written into it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": merge_report_name(run.name, round_),
            "namespace": run.metadata.namespace,
            "labels": labels.common(run.name, labels.MERGE_REPORT),
            "ownerReferences": [run_owner(run)],
        },
        "data": {},
    }
