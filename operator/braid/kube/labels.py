"""Labels on every object the operator creates; selectors to find them again."""

from __future__ import annotations

RUN = "braid.dev/run"
TASK = "braid.dev/task"
ATTEMPT = "braid.dev/attempt"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"

MANAGER = "braid-operator"
AGENT = "agent"
MERGE = "merge"
MERGE_REPORT = "merge-report"
TASK_COMPONENT = "task"

# The Job controller labels the pods of a Job with its name.
JOB_NAME = "batch.kubernetes.io/job-name"


def common(run: str, component: str) -> dict[str, str]:
    return {PART_OF: "braid", MANAGED_BY: MANAGER, COMPONENT: component, RUN: run}


def for_task(run: str, task: str) -> dict[str, str]:
    return {**common(run, TASK_COMPONENT), TASK: task}


def for_pod(run: str, task: str, attempt: int) -> dict[str, str]:
    return {**common(run, AGENT), TASK: task, ATTEMPT: str(attempt)}


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def run_selector(run: str, component: str) -> str:
    """Everything of one component (task, agent, merge) of one run."""
    return selector({RUN: run, COMPONENT: component})


def task_pods_selector(run: str, task: str) -> str:
    return selector({RUN: run, TASK: task, COMPONENT: AGENT})


MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGER}"
"""What the operator watches among pods and Jobs: only its own."""
