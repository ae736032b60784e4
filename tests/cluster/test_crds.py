"""The CRDs of crds/ as the API server sees them: accepted, structural, validating
with their schema and CEL rules, defaulting, and with a status subresource."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kube_cluster import CRDS_DIR, Cluster, crd_conditions

pytestmark = pytest.mark.cluster

GROUP, VERSION = "braid.dev", "v1alpha1"

MINIMAL_RUN = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "ParallelRun",
    "metadata": {"name": "r1"},
    "spec": {
        "repo": {"url": "https://example.com/x.git"},
        "tasks": [
            {"name": "a", "prompt": "do a"},
            {"name": "b", "prompt": "do b", "dependsOn": ["a"]},
        ],
    },
}

MINIMAL_TASK = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "AgentTask",
    "metadata": {"name": "r1-a"},
    "spec": {
        "run": "r1",
        "task": "a",
        "prompt": "do a",
        "repo": {"url": "https://example.com/x.git"},
        "branch": "braid/r1/tasks/a",
    },
}


def run_with(**spec: Any) -> dict:
    run = copy.deepcopy(MINIMAL_RUN)
    run["spec"].update(spec)
    return run


def served_schema(crd: dict) -> dict:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == VERSION]
    return version["schema"]["openAPIV3Schema"]


def declared_defaults(schema: dict, given: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every default the API server must apply to the object `given`.

    Defaults nested in an object apply only where that object is given or
    defaulted itself; in an array, to every item given.
    """
    if schema.get("type") == "array" and isinstance(given, list):
        for i, item in enumerate(given):
            yield from declared_defaults(schema.get("items", {}), item, (*path, i))
        return
    if not isinstance(given, dict):
        return
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop:
            yield (*path, name), prop["default"]
        if name in given or "default" in prop:
            yield from declared_defaults(prop, given.get(name, prop.get("default")), (*path, name))


def at(obj: Any, path: tuple) -> Any:
    for key in path:
        obj = obj[key]
    return obj


@pytest.fixture
def objects(cluster: Cluster, crds: dict) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


def create_run(objects: client.CustomObjectsApi, namespace: str, body: dict) -> dict:
    return objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "parallelruns", body)


def test_crds_apply_cleanly_and_are_structural(cluster: Cluster, crds: dict, namespace: str) -> None:
    assert {"parallelruns.braid.dev", "agenttasks.braid.dev"} <= set(crds)
    # applying again is a no-op, not an error
    cluster.kubectl("apply", "-f", str(CRDS_DIR))
    for name in crds:
        conditions = crd_conditions(cluster.api, name)
        assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"].message
        assert conditions["Established"].status == "True"
        assert conditions["NamesAccepted"].status == "True"
    # the short names resolve through discovery
    for short_name in ("prun", "atask"):
        cluster.kubectl("get", short_name, "-n", namespace)


INVALID_RUNS = {
    "duplicate task names": (
        run_with(tasks=[{"name": "a", "prompt": "do a"}, {"name": "a", "prompt": "do a again"}]),
        ["spec.tasks", "task names must be unique"],
    ),
    "task depends on itself": (
        run_with(tasks=[{"name": "a", "prompt": "do a", "dependsOn": ["a"]}]),
        ["spec.tasks[0]", "a task cannot depend on itself"],
    ),
    "prompt over 64 KiB": (
        run_with(tasks=[{"name": "a", "prompt": "x" * 65537}]),
        ["spec.tasks[0].prompt", "Too long", "65536"],
    ),
    "task name starting with '-'": (
        run_with(tasks=[{"name": "-bad", "prompt": "p"}]),
        ["spec.tasks[0].name", 'Invalid value: "-bad"', "should match"],
    ),
    "task name with '..'": (
        run_with(tasks=[{"name": "a..b", "prompt": "p"}]),
        ["spec.tasks[0].name", 'Invalid value: "a..b"', "should match"],
    ),
    "task name with a space and capitals": (
        run_with(tasks=[{"name": "Has Space", "prompt": "p"}]),
        ["spec.tasks[0].name", 'Invalid value: "Has Space"', "should match"],
    ),
    "no tasks": (
        run_with(tasks=[]),
        ["spec.tasks", "should have at least 1 items"],
    ),
    "option in the repository URL": (
        run_with(repo={"url": "--upload-pack=touch PWNED;://"}),
        ["spec.repo.url", "must not begin with '-'"],
    ),
    "remote helper in the repository URL": (
        run_with(repo={"url": "ext::sh -c touch% PWNED"}),
        ["spec.repo.url", "<transport>::<address>"],
    ),
    "control character in the repository URL": (
        run_with(repo={"url": "https://host/x\n.git"}),
        ["spec.repo.url", "control characters"],
    ),
    "unsupported scheme": (
        run_with(repo={"url": "ftp://host/x.git"}),
        ["spec.repo.url", "the scheme must be one of"],
    ),
    "password in an ssh URL": (
        run_with(repo={"url": "ssh://git:pw@host/x.git"}),
        ["spec.repo.url", "must not contain credentials"],
    ),
    "integration branch HEAD": (
        run_with(integrationBranch="HEAD"),
        ["spec.integrationBranch", "not HEAD or a full ref name"],
    ),
    "integration branch inside the task branches": (
        run_with(integrationBranch="braid/r1/tasks"),
        ["collides with the task branches"],
    ),
    "resolve-prompt-without-agent": (
        run_with(merge={"resolve": [{"paths": ["*.md"], "strategy": "union", "prompt": "merge it"}]}),
        ["prompt and agent are for strategy agent"],
    ),
    "pull-request-url-missing": (
        run_with(delivery={"pullRequest": {"provider": "gitlab", "repository": "group/app"}}),
        ["url is required for gitlab and gitea"],
    ),
    "pull-request-repository-dot-dot": (
        run_with(delivery={"pullRequest": {"provider": "github", "repository": "owner/.."}}),
        ["no path component may be '.' or '..'"],
    ),
}


@pytest.mark.parametrize("body, expected", INVALID_RUNS.values(), ids=INVALID_RUNS.keys())
def test_invalid_parallel_run_is_rejected_with_the_reason(objects, namespace: str, body: dict,
                                                         expected: list[str]) -> None:
    with pytest.raises(client.ApiException) as rejected:
        create_run(objects, namespace, body)
    assert rejected.value.status == 422, rejected.value.body
    message = json.loads(rejected.value.body)["message"]
    for text in expected:
        assert text in message


def test_valid_parallel_run_is_stored_with_defaults(objects, crds: dict, namespace: str) -> None:
    stored = create_run(objects, namespace, MINIMAL_RUN)

    assert stored["spec"]["maxParallel"] == 4
    assert stored["spec"]["repo"]["baseRef"] == "main"
    assert stored["spec"]["tasks"] == MINIMAL_RUN["spec"]["tasks"]
    defaults = list(declared_defaults(served_schema(crds["parallelruns.braid.dev"]), MINIMAL_RUN))
    assert defaults, "the ParallelRun schema declares no defaults"
    for path, value in defaults:
        assert at(stored, path) == value, f"{'.'.join(map(str, path))} is not defaulted to {value!r}"
    # status belongs to the status subresource: a create does not set it
    assert "status" not in stored


def test_valid_agent_task_is_stored_with_defaults(objects, crds: dict, namespace: str) -> None:
    stored = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "agenttasks", MINIMAL_TASK)

    assert stored["spec"]["repo"]["baseRef"] == "main"
    for path, value in declared_defaults(served_schema(crds["agenttasks.braid.dev"]), MINIMAL_TASK):
        assert at(stored, path) == value, f"{'.'.join(map(str, path))} is not defaulted to {value!r}"


def test_a_resolver_agent_task_is_stored_and_a_dotted_task_name_is_not(objects, namespace: str) -> None:
    resolver = copy.deepcopy(MINIMAL_TASK)
    resolver["metadata"]["name"] = "r1-a.resolve"
    resolver["spec"].update(task="a.resolve", resolves="a", branch="braid/r1/resolve/a")
    stored = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "agenttasks", resolver)
    assert (stored["spec"]["task"], stored["spec"]["resolves"]) == ("a.resolve", "a")
    dotted = copy.deepcopy(resolver)
    dotted["metadata"]["name"] = "r1-a.b"
    dotted["spec"]["task"] = "a.b"
    with pytest.raises(client.ApiException) as rejected:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "agenttasks", dotted)
    assert rejected.value.status == 422 and "spec.task" in json.loads(rejected.value.body)["message"]


def test_status_is_written_through_the_status_subresource_only(objects, namespace: str) -> None:
    created = create_run(objects, namespace, MINIMAL_RUN)
    merge = {"_content_type": "application/merge-patch+json"}

    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "parallelruns", "r1",
        {"status": {"phase": "Running", "progress": "0/2"}, "spec": {"maxParallel": 9}}, **merge)
    assert patched["status"]["phase"] == "Running"
    assert patched["status"]["progress"] == "0/2"
    # the status subresource ignores spec, and status writes leave the generation alone
    assert patched["spec"]["maxParallel"] == 4
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]

    # the main resource ignores status
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "parallelruns", "r1", {"status": {"phase": "Failed"}}, **merge)
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "parallelruns", "r1")
    assert stored["status"]["phase"] == "Running"
    assert stored["status"]["progress"] == "0/2"
