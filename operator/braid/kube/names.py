"""Deterministic names of everything the operator creates, so a restart finds what exists."""

from __future__ import annotations

# Run and task names are DNS-1123 labels of at most 40 characters (api/common.py),
# so every name below stays a valid object name; Job names stay under the 63
# characters the job-name label allows.


def agenttask_name(run: str, task: str) -> str:
    return f"{run}-{task}"


def pod_name(run: str, task: str, attempt: int) -> str:
    return f"{run}-{task}-{attempt}"


def merge_job_name(run: str, round_: int = 1) -> str:
    """The Job of one merge round: <run>-merge, then <run>-merge-2, ... after resolver tasks."""
    return f"{run}-merge" if round_ == 1 else f"{run}-merge-{round_}"


def merge_report_name(run: str, round_: int = 1) -> str:
    """ConfigMap that receives the merge report when it does not fit in a termination message."""
    return f"{merge_job_name(run, round_)}-report"
