"""The AgentTask of one task of a ParallelRun."""

from __future__ import annotations

from typing import Any

from braid.api import API_VERSION, AgentTaskSpec, ParallelRun, TaskSpec
from braid.plan.tasks import task_spec

from . import labels
from .meta import owner_reference
from .names import agenttask_name


def run_owner(run: ParallelRun) -> dict[str, Any]:
    return owner_reference(
        {"apiVersion": API_VERSION, "kind": "ParallelRun", "metadata": {"name": run.name, "uid": run.metadata.uid}}
    )


def agent_task(run: ParallelRun, task: TaskSpec) -> dict[str, Any]:
    """The AgentTask of one task of the spec, created held."""
    return _agent_task(run, task_spec(run, task))


def resolver_agent_task(run: ParallelRun, spec: AgentTaskSpec) -> dict[str, Any]:
    """The AgentTask of a resolver (plan.resolve): named <run>-<task>.resolve, released at once."""
    return _agent_task(run, spec)


def _agent_task(run: ParallelRun, spec: AgentTaskSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentTask",
        "metadata": {
            "name": agenttask_name(run.name, spec.task),
            "namespace": run.metadata.namespace,
            "labels": labels.for_task(run.name, spec.task),
            "ownerReferences": [run_owner(run)],
        },
        "spec": spec.wire(),
    }
