"""The control plane of hack/cluster.sh does what braid relies on: Jobs get pods,
owners' deletion collects their dependents, and RBAC is enforced."""

from __future__ import annotations

import pytest
from kubernetes import client

from kube_cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster


def job(name: str) -> dict:
    # The image is never pulled: the pod asks for a node that does not exist, so it
    # stays Pending whether or not a kubelet runs.
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"braid.dev/test-node": "none"},
                "containers": [{"name": "main", "image": "registry.invalid/braid/noop:1", "command": ["true"]}],
            }},
        },
    }


def job_pods(core: client.CoreV1Api, namespace: str, job_name: str) -> list:
    return core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}").items


def test_api_is_ready_with_default_namespace_and_service_account(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    core = client.CoreV1Api(cluster.api)
    assert core.read_namespace("default").status.phase == "Active"
    assert core.read_namespaced_service_account("default", "default")
    assert client.VersionApi(cluster.api).get_code().git_version.startswith("v1.")


def test_job_controller_creates_the_pod_and_the_scheduler_finds_no_fitting_node(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    created = client.BatchV1Api(cluster.api).create_namespaced_job(namespace, job("j1"))

    pods = wait_for(lambda: job_pods(core, namespace, "j1"), timeout=60, what="the job controller to create a pod")
    assert len(pods) == 1
    (owner,) = pods[0].metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Job", "j1", created.metadata.uid, True)

    def unschedulable():
        pod = core.read_namespaced_pod(pods[0].metadata.name, namespace)
        return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                   for c in pod.status.conditions or [])

    # the scheduler ran and found no fitting node: the pod stays Pending, unbound
    wait_for(unschedulable, timeout=60, what="the scheduler to mark the pod Unschedulable")
    pod = core.read_namespaced_pod(pods[0].metadata.name, namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def test_deleting_a_job_in_background_collects_its_pod(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    batch = client.BatchV1Api(cluster.api)
    batch.create_namespaced_job(namespace, job("j2"))
    wait_for(lambda: job_pods(core, namespace, "j2"), timeout=60, what="the job controller to create a pod")

    batch.delete_namespaced_job("j2", namespace, propagation_policy="Background")
    wait_for(lambda: not job_pods(core, namespace, "j2"), timeout=60,
             what="the garbage collector to delete the job's pod")


def test_deleting_an_owner_collects_the_owned_object(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "owned",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}],
    }})
    bystander = core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone():
        try:
            core.read_namespaced_config_map("owned", namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(owned_gone, timeout=60, what="the garbage collector to delete the owned ConfigMap")
    assert core.read_namespaced_config_map("bystander", namespace).metadata.uid == bystander.metadata.uid


def test_rbac_denies_a_service_account_until_a_role_allows_it(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    as_nobody = client.CoreV1Api(cluster.client_with_token(token))
    try:
        with pytest.raises(client.ApiException) as denied:
            as_nobody.list_namespaced_config_map(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in denied.value.body

        # the same token works once RBAC grants the verb: authentication was
        # fine, and authorization was what said no
        rbac.create_namespaced_role(namespace, {
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        })
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "nobody-reads-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
        })
        wait_for(lambda: as_nobody.list_namespaced_config_map(namespace) is not None, timeout=30,
                 what="the role binding to take effect")
        with pytest.raises(client.ApiException) as still_denied:
            as_nobody.list_namespaced_secret(namespace)
        assert still_denied.value.status == 403
    finally:
        as_nobody.api_client.close()
