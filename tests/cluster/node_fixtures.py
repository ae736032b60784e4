"""Fixtures for tests whose pods really run: the node of hack/node.sh, braid's agent-runner
image loaded into it (hack/build-images.sh), and a git server on the node network.

Import them into a test module (`from node_fixtures import node, agent_image, git_server`).
They are module-scoped: a module that brings the node up takes it down again afterwards,
so the modules after it find the cluster without a node, as they expect.

When the node or the images cannot be had, the tests fail with the reason; they are
never skipped and never fall back to a simulated node.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import kube_cluster
from gitserver import GitServer

REPO = Path(__file__).resolve().parents[2]
NODE_SH = REPO / "hack" / "node.sh"
BUILD_IMAGES_SH = REPO / "hack" / "build-images.sh"


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def _node_info() -> dict[str, str]:
    out = _run([str(NODE_SH), "info"], timeout=30).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def tail(path: str | Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def node(cluster: kube_cluster.Cluster) -> Iterator[dict[str, str]]:
    """The node of hack/node.sh, joined to the session's cluster and Ready.

    Taken down after the module when it was started here, so that the tests after it
    find the cluster as they expect it: without a node (their pods stay Pending).
    """
    if cluster.source == "external":
        pytest.fail("these tests run their own node and need the cluster of hack/cluster.sh; "
                    "BRAID_TEST_KUBECONFIG points at another cluster", pytrace=False)
    was_up = _run([str(NODE_SH), "status"], timeout=60).returncode == 0
    if not was_up:
        # a cold machine builds the kubelet here (minutes, once per machine)
        up = _run([str(NODE_SH), "up"], timeout=1800)
        if up.returncode != 0:
            pytest.fail(f"hack/node.sh up exited {up.returncode}: the node did not come up:\n{up.stderr}{up.stdout}",
                        pytrace=False)
    info = _node_info()
    try:
        yield info
    finally:
        if not was_up and not os.environ.get("BRAID_KEEP_CLUSTER"):
            down = _run([str(NODE_SH), "down"], timeout=300)
            assert down.returncode == 0, f"hack/node.sh down exited {down.returncode}:\n{down.stderr}"


@pytest.fixture(scope="module")
def agent_image(node: dict[str, str]) -> str:
    """braid's agent-runner image, built from its Dockerfile and loaded into the node."""
    built = _run([str(BUILD_IMAGES_SH), "--load", "agent-runner"], timeout=1800)
    if built.returncode != 0:
        pytest.fail(f"hack/build-images.sh --load agent-runner exited {built.returncode}:\n{built.stderr}",
                    pytrace=False)
    images = dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)
    return images["agent-runner"]


@pytest.fixture(scope="module")
def git_server(node: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """`git daemon` on the node IP: git://<node IP>:<port>/<name>, reachable from pods."""
    with GitServer(tmp_path_factory.mktemp("git-server") / "repos", node["node_ip"]) as server:
        yield server
