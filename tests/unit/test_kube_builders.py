"""The pure builders of braid.kube, compared as whole objects with golden YAML under golden/.

Regenerate the golden files after an intended change with BRAID_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from braid.api import AgentTask, ParallelRun
from braid.kube import (
    Event,
    agent_pod,
    agent_task,
    event_manifest,
    merge_job,
    merge_report_configmap,
    owned_by,
)
from braid.kube.quantity import at_least, parse_quantity
from braid.plan import merge_request
from braid.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
# read once: the settings fixture clears every BRAID_ variable
UPDATE_GOLDEN = bool(os.environ.get("BRAID_UPDATE_GOLDEN"))

RUN = {
    "apiVersion": "braid.dev/v1alpha1",
    "kind": "ParallelRun",
    "metadata": {"name": "auth", "namespace": "team-a", "uid": "11111111-2222-3333-4444-555555555555",
                 "generation": 1},
    "spec": {
        "repo": {"url": "https://git.example.com/app.git", "baseRef": "main", "credentialsSecret": "git-creds"},
        "maxParallel": 3,
        "agent": {"backend": "anthropic", "model": "claude-sonnet-4-5", "apiKeySecret": "anthropic-api-key",
                  "maxTurns": 50},
        "resources": {"requests": {"cpu": "1", "memory": "6Gi"}},
        "budget": {"maxCostUSD": 25},
        "retry": {"limit": 2, "backoffSeconds": 30},
        "taskTimeoutSeconds": 1800,
        "tasks": [
            {"name": "schema", "prompt": "Add a users table.", "paths": ["db/"]},
            {"name": "api", "prompt": "Add the users endpoint.", "dependsOn": ["schema"],
             "agent": {"model": "claude-opus-4-1", "maxTurns": 80}},
        ],
    },
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("BRAID_"):
            monkeypatch.delenv(name)
    return Settings(runner_image="ghcr.io/example/braid-agent:0.1.0")


@pytest.fixture
def run() -> ParallelRun:
    return ParallelRun.model_validate(RUN)


def as_agenttask(manifest: dict[str, Any], uid: str) -> AgentTask:
    body = json.loads(json.dumps(manifest))
    body["metadata"]["uid"] = uid
    body["metadata"]["generation"] = 1
    return AgentTask.model_validate(body)


def check_golden(name: str, obj: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.yaml"
    text = yaml.safe_dump(obj, sort_keys=False, width=120)
    if UPDATE_GOLDEN:
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with BRAID_UPDATE_GOLDEN=1 to write it"
    assert yaml.safe_load(path.read_text()) == obj, f"{name} differs from {path} (BRAID_UPDATE_GOLDEN=1 rewrites it)"


def test_agent_task(run: ParallelRun) -> None:
    manifest = agent_task(run, run.spec.task("api"))
    check_golden("agenttask", manifest)
    assert manifest["metadata"]["name"] == "auth-api"
    assert manifest["spec"]["suspend"] is True
    assert manifest["spec"]["dependencyBranches"] == ["braid/auth/tasks/schema"]
    assert owned_by(manifest, RUN["metadata"]["uid"])


def test_agent_pod(run: ParallelRun, settings: Settings) -> None:
    task = as_agenttask(agent_task(run, run.spec.task("api")), "aaaaaaaa-0000-0000-0000-000000000001")
    pod = agent_pod(task, 2, settings)
    check_golden("pod", pod)
    assert pod["metadata"]["name"] == "auth-api-2"
    assert owned_by(pod, "aaaaaaaa-0000-0000-0000-000000000001")


def test_agent_pod_with_every_placement_and_storage_setting(run: ParallelRun, settings: Settings) -> None:
    settings = settings.model_copy(update={
        "runtime_class_name": "gvisor",
        "scheduler_name": "batch-scheduler",
        "node_selector": {"pool": "agents"},
        "tolerations": [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}],
        "cache_pvc": "braid-git-cache",
        "workspace_storage_class": "fast-ssd",
        "service_account": "braid-agent",
        "image_pull_policy": "Always",
    })
    task = as_agenttask(agent_task(run, run.spec.task("schema")), "aaaaaaaa-0000-0000-0000-000000000002")
    check_golden("pod-placed", agent_pod(task, 1, settings))


def containers(pod: dict) -> dict[str, dict]:
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def test_agent_pod_passes_the_restricted_pod_security_standard(run: ParallelRun, settings: Settings) -> None:
    task = as_agenttask(agent_task(run, run.spec.task("api")), "u")
    pod = agent_pod(task, 1, settings)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(containers(pod)) == {"prepare", "agent", "runner"}
    for container in containers(pod).values():
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"))
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "secret", "persistentVolumeClaim", "ephemeral"}


def test_the_agent_container_mounts_no_secret_and_cannot_change_git(run: ParallelRun, settings: Settings) -> None:
    task = as_agenttask(agent_task(run, run.spec.task("api")), "u")
    pod = agent_pod(task, 1, settings)
    secret_volumes = {v["name"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert secret_volumes == {"api-key", "git-credentials"}
    by_name = containers(pod)
    agent = by_name["agent"]
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert not {m["name"] for m in agent["volumeMounts"]} & secret_volumes
    assert mounts["/workspace/repo/.git"]["readOnly"] is True and mounts["/workspace/repo/.git"]["subPath"] == "repo/.git"
    assert mounts["/cache"]["readOnly"] is True
    assert "state" not in {m["name"] for m in agent["volumeMounts"]}  # braid's record of the lease
    # braid's tmp (the runner's HOME) is not the agent's
    assert mounts["/tmp"]["name"] != {m["mountPath"]: m for m in by_name["runner"]["volumeMounts"]}["/tmp"]["name"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["BRAID_MODEL_PROXY"] == "http://127.0.0.1:8181"
    assert env["BRAID_MODEL_KEY"].startswith("braid-placeholder-")
    assert all("valueFrom" not in e for c in by_name.values() for e in c["env"])
    # the runner honours that placeholder; only it and prepare hold secrets
    runner_env = {e["name"]: e.get("value") for e in by_name["runner"]["env"]}
    assert runner_env["BRAID_MODEL_KEY"] == env["BRAID_MODEL_KEY"]
    assert {m["name"] for m in by_name["runner"]["volumeMounts"]} >= secret_volumes
    assert {m["name"] for m in by_name["prepare"]["volumeMounts"]} & secret_volumes == {"git-credentials"}


def test_secrets_reach_the_pod_as_files_never_as_environment(run: ParallelRun, settings: Settings) -> None:
    task = as_agenttask(agent_task(run, run.spec.task("api")), "u")
    pod = agent_pod(task, 1, settings)
    container = containers(pod)["runner"]
    assert {e["name"] for e in container["env"]} == {"BRAID_TASK_SPEC", "BRAID_ATTEMPT", "BRAID_MODEL_KEY", "HOME",
                                                     "PYTHONUNBUFFERED"}
    secrets = {v["name"]: v["secret"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert secrets["api-key"]["secretName"] == "anthropic-api-key"
    assert secrets["api-key"]["items"] == [{"key": "api-key", "path": "api-key"}]
    assert secrets["git-credentials"]["secretName"] == "git-creds"
    command = container["command"]
    assert command[command.index("--phase") + 1] == "publish"
    assert command[command.index("--api-key-file") + 1] == "/var/run/secrets/braid/api-key/api-key"
    assert command[command.index("--credentials-dir") + 1] == "/var/run/secrets/braid/git"
    assert command[command.index("--result") + 1] == container["terminationMessagePath"] == "/dev/termination-log"
    spec = json.loads(next(e["value"] for e in container["env"] if e["name"] == "BRAID_TASK_SPEC"))
    assert spec["agent"]["apiKeySecret"] == "anthropic-api-key"
    assert "suspend" not in spec


def test_agent_pod_without_secrets_mounts_none(settings: Settings) -> None:
    plain = json.loads(json.dumps(RUN))
    del plain["spec"]["repo"]["credentialsSecret"]
    del plain["spec"]["agent"]["apiKeySecret"]
    run = ParallelRun.model_validate(plain)
    pod = agent_pod(as_agenttask(agent_task(run, run.spec.task("schema")), "u"), 1, settings)
    assert not [v for v in pod["spec"]["volumes"] if "secret" in v]
    for container in containers(pod).values():
        assert "--api-key-file" not in container["command"]
        assert "--credentials-dir" not in container["command"]
        assert "BRAID_MODEL_KEY" not in {e["name"] for e in container["env"]}


def test_resources_default_from_settings_and_a_limit_never_undercuts_a_request(
    run: ParallelRun, settings: Settings
) -> None:
    task = as_agenttask(agent_task(run, run.spec.task("api")), "u")
    resources = containers(agent_pod(task, 1, settings))["agent"]["resources"]
    # the spec asks for 6Gi; the default limit (4Gi) is raised to match
    assert resources == {"requests": {"cpu": "1", "memory": "6Gi"}, "limits": {"cpu": "2", "memory": "6Gi"}}


def test_merge_job_and_report_configmap(run: ParallelRun, settings: Settings) -> None:
    request = merge_request(run, {"schema"})
    assert [t.name for t in request.tasks] == ["schema"]
    assert request.not_merged == ["api"]
    job = merge_job(run, request, settings)
    check_golden("merge-job", job)
    check_golden("merge-report-configmap", merge_report_configmap(run))
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert json.loads(env["BRAID_MERGE_REQUEST"]) == request.wire()


def test_merge_job_gets_a_token_only_with_a_report_service_account(run: ParallelRun, settings: Settings) -> None:
    settings = settings.model_copy(update={"merge_service_account": "braid-merge"})
    spec = merge_job(run, merge_request(run, {"schema", "api"}), settings)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "braid-merge"
    assert spec["automountServiceAccountToken"] is True


def test_event_manifest() -> None:
    involved = {"apiVersion": "braid.dev/v1alpha1", "kind": "ParallelRun",
                "metadata": {"name": "auth", "namespace": "team-a", "uid": "u-1"}}
    event = event_manifest(involved, Event("Warning", "MergeConflict", "task ui conflicts" + "x" * 2000),
                           "2026-01-02T03:04:05Z", "18a2b3c4d5e6f000", "braid-operator-0")
    assert len(event["message"]) == 1024
    event["message"] = event["message"][:40]
    check_golden("event", event)


@pytest.mark.parametrize(("text", "value"), [
    ("500m", 0.5), ("2", 2), (2, 2), ("1Gi", 2**30), ("1G", 10**9), ("1.5Ki", 1536), ("100Mi", 100 * 2**20),
    ("bogus", None),
])
def test_parse_quantity(text: str | int, value: float | None) -> None:
    parsed = parse_quantity(text)
    assert (float(parsed) if parsed is not None else None) == value


def test_at_least() -> None:
    assert at_least("4Gi", "6Gi") == "6Gi"
    assert at_least("4Gi", "1Gi") == "4Gi"
    assert at_least("2", "500m") == "2"
    assert at_least("2", "strange") == "2"


def test_event_messages_reach_kubectl_escaped() -> None:
    involved = {"apiVersion": "braid.dev/v1alpha1", "kind": "AgentTask",
                "metadata": {"name": "r-t", "namespace": "team-a", "uid": "u-2"}}
    event = event_manifest(involved, Event("Warning", "AttemptFailed", "agent said \x1b]0;pwned\x07\x1b[2J done\nok"),
                           "2026-01-02T03:04:05Z", "18a2b3c4d5e6f001", "braid-operator-0")
    assert event["message"] == "agent said \\x1b]0;pwned\\x07\\x1b[2J done\nok"


def test_merge_job_runs_verify_in_a_sidecar_of_its_image_without_any_secret(run: ParallelRun,
                                                                              settings: Settings) -> None:
    settings = settings.model_copy(update={"merge_service_account": "braid-merge"})
    data = run.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["spec"]["merge"] = {"verify": {"command": ["make", "test"], "image": "ci.example.com/app-ci:1",
                                        "timeoutSeconds": 300}, "onVerifyFailure": "exclude"}
    verified = ParallelRun.model_validate(data)
    request = merge_request(verified, {"schema", "api"})
    assert request.verify is not None and request.verify.command == ["make", "test"]
    job = merge_job(verified, request, settings)
    spec = job["spec"]["template"]["spec"]
    [verify] = spec["initContainers"]
    [merge] = spec["containers"]
    assert verify["name"] == "verify"
    assert verify["image"] == "ci.example.com/app-ci:1"
    # a native sidecar: started before the merge container, stopped once it has ended
    assert verify["restartPolicy"] == "Always"
    assert verify["command"] == ["braid", "verify-serve", "--handoff", "/verify"]
    assert merge["command"][-2:] == ["--verify-handoff", "/verify"]
    # the two share only the handoff directory; credentials, cache and the token stay with the merge container
    mounts = {m["mountPath"]: m["name"] for m in verify["volumeMounts"]}
    assert mounts == {"/verify": "verify", "/tmp": "verify-tmp",
                      "/var/run/secrets/kubernetes.io/serviceaccount": "no-token"}
    assert "/var/run/secrets/braid/git" in {m["mountPath"] for m in merge["volumeMounts"]}
    assert {"name": "verify", "mountPath": "/verify"} in merge["volumeMounts"]
    assert [e["name"] for e in verify["env"]] == ["HOME", "PYTHONUNBUFFERED"]
    assert verify["securityContext"] == merge["securityContext"]
    # the deadline leaves room for every verify run the merge may make (4 rounds of 1 + ceil(log2 2) runs)
    assert job["spec"]["activeDeadlineSeconds"] == settings.merge_timeout_seconds + 4 * 2 * (300 + 90)


def test_merge_job_without_verify_has_no_sidecar(run: ParallelRun, settings: Settings) -> None:
    job = merge_job(run, merge_request(run, {"schema", "api"}), settings)
    assert "initContainers" not in job["spec"]["template"]["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == settings.merge_timeout_seconds


def test_verify_image_defaults_to_the_runner_image(run: ParallelRun, settings: Settings) -> None:
    data = run.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["spec"]["merge"] = {"verify": {"command": ["pytest"]}}
    verified = ParallelRun.model_validate(data)
    job = merge_job(verified, merge_request(verified, {"schema"}), settings)
    assert job["spec"]["template"]["spec"]["initContainers"][0]["image"] == settings.runner_image
