"""The pod of one attempt of an AgentTask: `braid agent-run` in the runner image."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from braid.api import AgentTask
from braid.settings import Settings

from . import labels
from .meta import owner_reference
from .names import pod_name
from .quantity import at_least
from .security import container_security_context, placement, pod_security_context

WORKSPACE = "/workspace"
CACHE = "/cache"
TMP = "/tmp"
API_KEY_DIR = "/var/run/secrets/braid/api-key"
GIT_CREDENTIALS_DIR = "/var/run/secrets/braid/git"
API_KEY_SECRET_KEY = "api-key"
TERMINATION_LOG = "/dev/termination-log"
SECRET_MODE = 0o440


def resources(requested: Any, settings: Settings) -> dict[str, dict[str, Any]]:
    """Settings defaults overlaid with what the spec asks for; a default limit never undercuts a request."""
    requests: dict[str, Any] = {"cpu": settings.default_cpu_request, "memory": settings.default_memory_request}
    limits: dict[str, Any] = {"cpu": settings.default_cpu_limit, "memory": settings.default_memory_limit}
    own_requests = dict(requested.requests or {}) if requested else {}
    own_limits = dict(requested.limits or {}) if requested else {}
    requests.update(own_requests)
    for key, value in requests.items():
        if key in limits and key not in own_limits:
            limits[key] = at_least(limits[key], value)
    limits.update(own_limits)
    return {"requests": requests, "limits": limits}


def cache_volume(settings: Settings) -> dict[str, Any]:
    if settings.cache_pvc:
        return {"name": "cache", "persistentVolumeClaim": {"claimName": settings.cache_pvc}}
    return {"name": "cache", "emptyDir": {}}


def workspace_volume(settings: Settings) -> dict[str, Any]:
    if settings.workspace_storage_class:
        # a generic ephemeral volume: a PVC created with the pod and deleted with it
        claim = {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": settings.workspace_storage_class,
            "resources": {"requests": {"storage": settings.workspace_size_limit}},
        }
        return {"name": "workspace", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}
    return {"name": "workspace", "emptyDir": {"sizeLimit": settings.workspace_size_limit}}


def tmp_volume(settings: Settings) -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}}


def git_credentials_volume(secret: str) -> dict[str, Any]:
    return {"name": "git-credentials", "secret": {"secretName": secret, "defaultMode": SECRET_MODE}}


def base_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "cache", "mountPath": CACHE},
        {"name": "tmp", "mountPath": TMP},
    ]


def add_git_credentials(secret: str | None, command: list[str], mounts: list[dict[str, Any]],
                        volumes: list[dict[str, Any]]) -> None:
    """Mount the git credentials Secret as files and tell braid where they are."""
    if secret:
        command += ["--credentials-dir", GIT_CREDENTIALS_DIR]
        mounts.append({"name": "git-credentials", "mountPath": GIT_CREDENTIALS_DIR, "readOnly": True})
        volumes.append(git_credentials_volume(secret))


def runner_pod_spec(container: dict[str, Any], volumes: list[dict[str, Any]], settings: Settings,
                    **overrides: Any) -> dict[str, Any]:
    """The pod spec every braid runner container gets (agent pods and the merge Job alike):
    restricted security, the result in the termination message, HOME on the writable /tmp."""
    container = {
        **container,
        "imagePullPolicy": settings.image_pull_policy,
        "env": [*container["env"], {"name": "HOME", "value": TMP}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
    }
    return {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        **placement(settings),
        "containers": [container],
        "volumes": volumes,
        **overrides,
    }


AGENT_CONTAINER = "agent"
RUNNER_CONTAINER = "runner"
"""The container whose termination message is the attempt's result."""
STATE = "/braid"
HANDOFF = "/handoff"
MODEL_PROXY_LISTEN = "127.0.0.1:8181"
RUNNER_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}}


def runner_container_defaults(settings: Settings) -> dict[str, Any]:
    return {"imagePullPolicy": settings.image_pull_policy, "securityContext": container_security_context()}


def model_placeholder(uid: str, attempt: int) -> str:
    """The agent's stand-in for the API key: it opens nothing but this pod's own proxy."""
    return "braid-placeholder-" + hashlib.sha256(f"{uid}/{attempt}".encode()).hexdigest()[:32]


def agent_pod(task: AgentTask, attempt: int, settings: Settings) -> dict[str, Any]:
    """Three containers, so that no container running agent code holds a secret:

    prepare (init; git credentials) makes the working copy; agent (the agent's image; no
    secret) runs the agent, with .git and the object cache read-only and the model behind
    a proxy on loopback; runner (braid's image; git credentials and API key) serves that
    proxy, then commits, scans and pushes the agent's work and reports the result.
    """
    spec = task.spec
    agent = spec.agent
    meta = task.metadata
    workdir = f"{WORKSPACE}/repo"

    base = ["braid", "agent-run", "--workdir", workdir, "--cache-dir", f"{CACHE}/git", "--state", STATE,
            "--handoff", HANDOFF]
    volumes = [workspace_volume(settings), cache_volume(settings), tmp_volume(settings),
               {"name": "agent-tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}},
               {"name": "state", "emptyDir": {"sizeLimit": "16Mi"}},
               {"name": "handoff", "emptyDir": {"sizeLimit": "16Mi"}}]
    braid_mounts = [{"name": "workspace", "mountPath": WORKSPACE}, *base_mounts(),
                    {"name": "state", "mountPath": STATE}]
    prepare_command = [*base, "--phase", "prepare"]
    prepare_mounts = [*braid_mounts, {"name": "handoff", "mountPath": HANDOFF}]
    runner_command = [*base, "--phase", "publish", "--result", TERMINATION_LOG,
                      "--model-proxy-listen", MODEL_PROXY_LISTEN]
    runner_mounts = [*braid_mounts, {"name": "handoff", "mountPath": HANDOFF, "readOnly": True}]
    if spec.repo.credentials_secret:
        volumes.append(git_credentials_volume(spec.repo.credentials_secret))
        for command, mounts in ((prepare_command, prepare_mounts), (runner_command, runner_mounts)):
            command += ["--credentials-dir", GIT_CREDENTIALS_DIR]
            mounts.append({"name": "git-credentials", "mountPath": GIT_CREDENTIALS_DIR, "readOnly": True})
    agent_env: list[dict[str, Any]] = []
    if agent.api_key_secret:
        runner_command += ["--api-key-file", f"{API_KEY_DIR}/{API_KEY_SECRET_KEY}"]
        runner_mounts.append({"name": "api-key", "mountPath": API_KEY_DIR, "readOnly": True})
        volumes.append({
            "name": "api-key",
            "secret": {
                "secretName": agent.api_key_secret,
                "items": [{"key": API_KEY_SECRET_KEY, "path": API_KEY_SECRET_KEY}],
                "defaultMode": SECRET_MODE,
            },
        })
        # what the agent container gets instead of the key: the proxy, and a placeholder only that
        # proxy honours (it listens on the pod's loopback)
        placeholder = model_placeholder(meta.uid or "", attempt)
        agent_env = [{"name": "BRAID_MODEL_PROXY", "value": f"http://{MODEL_PROXY_LISTEN}"},
                     {"name": "BRAID_MODEL_KEY", "value": placeholder}]

    # the spec names secrets but never holds one; suspend is the operator's business
    task_json = json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"suspend"}),
                           separators=(",", ":"), sort_keys=True)
    env = [{"name": "BRAID_TASK_SPEC", "value": task_json}, {"name": "BRAID_ATTEMPT", "value": str(attempt)}]
    runner = {
        "name": RUNNER_CONTAINER,
        "image": settings.runner_image,
        "command": runner_command,
        "workingDir": WORKSPACE,
        "env": [*env, *agent_env[1:]],
        "resources": {**RUNNER_RESOURCES, "limits": resources(spec.resources, settings)["limits"]},
        "volumeMounts": runner_mounts,
    }
    prepare_container = {
        **runner_container_defaults(settings),
        "name": "prepare",
        "image": settings.runner_image,
        "command": prepare_command,
        "workingDir": WORKSPACE,
        "env": [*env, {"name": "HOME", "value": TMP}],
        "resources": resources(spec.resources, settings),
        "volumeMounts": prepare_mounts,
    }
    agent_container = {
        **runner_container_defaults(settings),
        "name": AGENT_CONTAINER,
        "image": agent.image or settings.runner_image,
        "command": [*base, "--phase", "agent"],
        "workingDir": workdir,
        "env": [*env, *agent_env, {"name": "HOME", "value": TMP}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": resources(spec.resources, settings),
        # the working copy writable, its .git and the object cache read-only, no secret, a /tmp of its own
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE},
                         {"name": "workspace", "mountPath": f"{workdir}/.git", "subPath": "repo/.git",
                          "readOnly": True},
                         {"name": "cache", "mountPath": CACHE, "readOnly": True},
                         {"name": "agent-tmp", "mountPath": TMP},
                         {"name": "handoff", "mountPath": HANDOFF}],
    }
    pod_spec = runner_pod_spec(runner, volumes, settings, activeDeadlineSeconds=spec.timeout_seconds)
    pod_spec["initContainers"] = [prepare_container]
    pod_spec["containers"] = [agent_container, *pod_spec["containers"]]
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    owner = {"apiVersion": task.api_version, "kind": task.kind, "metadata": {"name": meta.name, "uid": meta.uid}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(spec.run, spec.task, attempt),
            "namespace": meta.namespace,
            "labels": labels.for_pod(spec.run, spec.task, attempt),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": pod_spec,
    }
