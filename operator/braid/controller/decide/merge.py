"""The merge on the cluster: the Job that runs it, and what it reported as plan.step reads it. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid.api import MergeRequest, MergeStatus, ParallelRun
from braid.kube import merge_job, merge_report_configmap
from braid.settings import Settings

from .observe import MergeView

if TYPE_CHECKING:
    from .run import RunPlan


def merge_status(view: MergeView, run: ParallelRun) -> MergeStatus | None:
    """None before the Job exists; Running while it runs; its report (or why there is none) once it ended."""
    if not view.exists:
        return None
    branch = run.integration_branch
    if view.outcome is None:
        return MergeStatus(phase="Running", branch=branch)
    if view.report is not None:
        return view.report
    if view.outcome == "Succeeded":
        message = "the merge Job succeeded but its report could not be read"
    else:
        message = view.message or "the merge Job failed"
    return MergeStatus(phase="Failed", branch=branch, message=message)


def start_merge(plan: RunPlan, run: ParallelRun, request: MergeRequest | None, settings: Settings) -> None:
    if request is not None:
        plan.create.append(merge_report_configmap(run, request.round))
        plan.create.append(merge_job(run, request, settings))
