"""Fixtures for tests against a real Kubernetes API server (see hack/cluster.sh).

`cluster` brings the control plane up once per session (or reuses one that is
already up, or the cluster of BRAID_TEST_KUBECONFIG) and stops it afterwards
only if this session started it; BRAID_KEEP_CLUSTER=1 leaves it running.
When the cluster cannot be brought up, every test that needs it fails with
the reason: these tests are never skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kube_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[kube_cluster.Cluster]:
    try:
        started = kube_cluster.start_cluster()
    except kube_cluster.ClusterUnavailable as exc:
        reason = str(exc)
    else:
        reason = None
    if reason:  # failed outside the except block, so the report shows only the reason
        pytest.fail(reason, pytrace=False)
    try:
        yield started
    finally:
        kube_cluster.stop_cluster(started)


@pytest.fixture(scope="session")
def crds(cluster: kube_cluster.Cluster) -> dict[str, dict[str, Any]]:
    """The CRDs of crds/, applied with kubectl and Established, by name."""
    applied = kube_cluster.apply_crds(cluster)
    if not applied:
        pytest.fail(f"no CustomResourceDefinitions in {kube_cluster.CRDS_DIR}", pytrace=False)
    return applied


@pytest.fixture
def namespace(cluster: kube_cluster.Cluster) -> Iterator[str]:
    """A namespace of its own for one test, deleted afterwards."""
    name = kube_cluster.create_namespace(cluster.api)
    yield name
    kube_cluster.delete_namespace(cluster.api, name)
