"""Fuzzing ParallelRuns through the real API server with the operator running.

Hypothesis mutates a valid ParallelRun: it replaces or removes fields, and puts odd text,
control characters, huge numbers and nested structures where strings, lists and numbers
belong. Each body goes to the API server. What the CRD's schema and validation rules
refuse is refused there. What it admits, the operator reconciles. What a user must be able
to count on: the operator never crashes and never logs a traceback, and every admitted
run gets a status that says what became of it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kube_cluster import wait_for
from test_operator_harness import GROUP, VERSION, Kit, Operator, braid_operator, kit, operator_env

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
__all__ = ["braid_operator", "kit", "operator_env"]  # fixtures

BASE: dict[str, Any] = {
    "repo": {"url": "https://git.example.com/app.git", "baseRef": "main"},
    "agent": {"backend": "script"},
    "maxParallel": 2,
    "retry": {"limit": 1, "backoffSeconds": 5},
    "tasks": [
        {"name": "schema", "prompt": "Add a users table."},
        {"name": "api", "prompt": "Expose users.", "dependsOn": ["schema"]},
    ],
}
PATHS = [
    ("repo", "url"), ("repo", "baseRef"), ("repo", "credentialsSecret"), ("integrationBranch",), ("maxParallel",),
    ("budget",), ("retry",), ("retry", "limit"), ("taskTimeoutSeconds",), ("suspend",), ("agent",),
    ("agent", "backend"), ("agent", "command"), ("agent", "env"), ("agent", "model"), ("agent", "image"),
    ("agent", "script"), ("tasks",), ("tasks", 0, "name"), ("tasks", 1, "dependsOn"), ("tasks", 0, "prompt"),
    ("tasks", 1, "agent"), ("tasks", 0, "resources"), ("tasks", 0, "paths"),
]
odd_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["-", "--upload-pack=touch /tmp/x", "ext::sh -c x", "HEAD", "refs/heads/x", "a\x00b", "\x1b[2J",
                     "../../etc", "https://u:p@h/x", "ssh://u:p@h/x", "x" * 70, "main;rm -rf /", "$(id)", "`id`",
                     "é" * 300, "\u202e", "a..b", "/", ".", "@{-1}"]),
)
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63), odd_text,
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(odd_text, children, max_size=4)),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    spec = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = spec
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
            if parent is None:
                break
        if not isinstance(parent, dict | list):
            continue
        last = path[-1]
        if isinstance(parent, list) and (not isinstance(last, int) or last >= len(parent)):
            continue
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(last, None)
        else:
            parent[last] = draw(json_value)
    return spec


def test_fuzzed_parallelruns_never_crash_the_operator(kit: Kit, braid_operator: Operator) -> None:
    admitted: list[str] = []
    refused = 0
    count = iter(range(10_000))

    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated())
    def one(spec: dict[str, Any]) -> None:
        nonlocal refused
        name = f"fuzz-{next(count)}"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ParallelRun", "metadata": {"name": name}, "spec": spec}
        try:
            kit.custom.create_namespaced_custom_object(GROUP, VERSION, kit.namespace, "parallelruns", body)
        except ApiException as exc:
            assert exc.status in (400, 422), (exc.status, exc.body)
            refused += 1
            return
        admitted.append(name)

    one()
    assert admitted and refused, f"the fuzz should reach both outcomes: {len(admitted)} admitted, {refused} refused"

    def reconciled() -> list[str] | None:
        missing = [n for n in admitted if not (kit.status(n).get("phase") and kit.status(n).get("conditions"))]
        assert braid_operator.proc is not None and braid_operator.proc.poll() is None, braid_operator.log_tail()
        return None if missing else admitted

    wait_for(reconciled, timeout=120, interval=1, what=f"every admitted run to get a status\n{braid_operator.log_tail()}")
    time.sleep(2)  # what the last reconciliations log
    log = braid_operator.log_path.read_text(errors="replace")
    assert "Traceback" not in log, braid_operator.log_tail(120)
    assert braid_operator.proc.poll() is None
    phases = {kit.status(n)["phase"] for n in admitted}
    assert phases <= {"Pending", "Running", "Failed", "Suspended", "Succeeded", "Merging", "Conflicted"}, phases
