"""A real Kubernetes API server for tests, from `hack/cluster.sh`, and helpers to use it.

`hack/cluster.sh up` starts a local control plane (or checks the cluster of
BRAID_TEST_KUBECONFIG); this module drives it from Python and gives tests
what they need on top: a client, kubectl, the CRDs applied, throw-away
namespaces and polling with deadlines.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "hack" / "cluster.sh"
CRDS_DIR = REPO / "crds"

T = TypeVar("T")


class ClusterUnavailable(Exception):
    """The cluster could not be brought up or reached; the message says why."""


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_path: Path
    source: str  # built, envtest or external (see hack/cluster.sh)
    started_here: bool
    api: client.ApiClient = field(repr=False)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def client_with_token(self, token: str) -> client.ApiClient:
        """An ApiClient for the same server that authenticates with a bearer token only."""
        kubeconfig = yaml.safe_load(self.kubeconfig.read_text())
        context = next(c["context"] for c in kubeconfig["contexts"]
                       if c["name"] == kubeconfig["current-context"])
        cluster = next(c for c in kubeconfig["clusters"] if c["name"] == context["cluster"])
        return config.new_client_from_config_dict({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [{"name": "token", "context": {"cluster": cluster["name"], "user": "token"}}],
            "current-context": "token",
        })


def cluster_sh(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLUSTER_SH), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout, check=False)


def start_cluster() -> Cluster:
    """Bring the cluster up, or reuse the one that is already up."""
    already_up = cluster_sh("status", timeout=60).returncode == 0
    if not already_up:
        up = cluster_sh("up")
        if up.returncode != 0:
            raise ClusterUnavailable(f"hack/cluster.sh up exited {up.returncode}:\n{up.stderr}{up.stdout}")
    info = dict(line.split("=", 1) for line in cluster_sh("info").stdout.splitlines() if "=" in line)
    kubeconfig = Path(info["kubeconfig"])
    return Cluster(
        kubeconfig=kubeconfig,
        kubectl_path=Path(info["kubectl"]),
        source=info["source"],
        # an external cluster is never ours to stop
        started_here=not already_up and info["source"] != "external",
        api=config.new_client_from_config(config_file=str(kubeconfig)),
    )


def stop_cluster(cluster: Cluster) -> None:
    cluster.api.close()
    if cluster.started_here and not os.environ.get("BRAID_KEEP_CLUSTER"):
        down = cluster_sh("down", timeout=120)
        if down.returncode != 0:
            raise ClusterUnavailable(f"hack/cluster.sh down exited {down.returncode}:\n{down.stderr}")


def wait_for(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds.

    Exceptions raised by `condition` count as "not yet"; the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def crd_manifests(directory: Path = CRDS_DIR) -> dict[str, dict[str, Any]]:
    """The CustomResourceDefinitions in the YAML files of `directory`, by name."""
    crds = {}
    for path in sorted(directory.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                crds[doc["metadata"]["name"]] = doc
    return crds


def crd_conditions(api: client.ApiClient, name: str) -> dict[str, Any]:
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
    return {c.type: c for c in (crd.status.conditions or [])}


def apply_crds(cluster: Cluster, directory: Path = CRDS_DIR, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """`kubectl apply -f <directory>` and wait until every CRD in it is Established."""
    crds = crd_manifests(directory)
    if not crds:
        return crds
    cluster.kubectl("apply", "-f", str(directory))
    for name in crds:
        wait_for(lambda name=name: (c := crd_conditions(cluster.api, name).get("Established")) and c.status == "True",
                 timeout=timeout, what=f"CRD {name} to be Established")
    return crds


def create_namespace(api: client.ApiClient, prefix: str = "braid-test-", timeout: float = 30) -> str:
    """A fresh namespace, returned once its default service account exists.

    The service-account admission plugin rejects pods in a namespace whose
    `default` service account the controller-manager has not created yet.
    """
    core = client.CoreV1Api(api)
    name = core.create_namespace({"metadata": {"generateName": prefix}}).metadata.name
    wait_for(lambda: core.read_namespaced_service_account("default", name), timeout=timeout,
             what=f"the default service account of namespace {name}")
    return name


def delete_namespace(api: client.ApiClient, name: str) -> None:
    """Start deleting a namespace; the namespace controller finishes in the background."""
    try:
        client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")
    except client.ApiException as exc:
        if exc.status != 404:
            raise
