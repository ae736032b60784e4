"""Reconcile one ParallelRun: read it, its AgentTasks and its merge Job, decide (decide.run), apply, report."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from pydantic import ValidationError

from braid.api import AgentTask, ParallelRun, ParallelRunStatus, format_validation_error
from braid.kube import REPORT_KEY, Event, labels, merge_job_name, merge_report_name, owned_by
from braid.kube.job import CONTAINER as MERGE_CONTAINER

from .client import AGENTTASKS, CONFIGMAPS, JOBS, PARALLELRUNS, PODS
from .context import Context, utcnow
from .decide import (
    MergeView,
    RunObservation,
    RunPlan,
    decide_run,
    invalid_run,
    job_failure_message,
    job_outcome,
    parse_merge_report,
)
from .errors import AlreadyExists, KubeError, NotFound
from .parsing import parse_run, parse_task, run_status
from .queue import Key

log = logging.getLogger("braid.controller.parallelrun")


async def reconcile_parallelrun(ctx: Context, key: Key) -> float | None:
    """Converge one ParallelRun; return when to look again (None: it is gone)."""
    body = await ctx.read_live(PARALLELRUNS, key)
    if body is None:
        # garbage collection removes the AgentTasks, their pods and the merge Job
        return None
    meta = body["metadata"]
    now = utcnow()
    try:
        run = parse_run(body)
    except ValidationError as exc:
        plan = invalid_run(run_status(body) or ParallelRunStatus(), meta.get("generation"), "InvalidSpec",
                           format_validation_error(exc), now)
        await _write_status(ctx, body, plan)
        await ctx.post_events(body, plan.events)
        ctx.metrics.run_phase(meta["uid"], key.namespace, plan.status.phase)
        return None if plan.status.phase == "Failed" else ctx.settings.resync_seconds

    tasks, resolvers, strays = await _children(ctx, run, meta["uid"])
    merge = await _observe_merge(ctx, run)
    plan = decide_run(RunObservation(run=run, tasks=tasks, resolvers=resolvers, strays=strays, merge=merge),
                      ctx.settings, now)
    await _apply(ctx, key, plan)
    await _write_status(ctx, body, plan)
    await ctx.post_events(body, plan.events)

    ctx.metrics.run_phase(meta["uid"], key.namespace, plan.status.phase)
    if plan.finished:
        ctx.metrics.runs_finished.labels(key.namespace, plan.status.phase).inc()
        if plan.status.merge is not None and plan.status.merge.conflict_count:
            ctx.metrics.merge_conflicts.labels(key.namespace).inc(plan.status.merge.conflict_count)
    return ctx.settings.resync_seconds


async def _children(ctx: Context, run: ParallelRun,
                    uid: str) -> tuple[dict[str, AgentTask], dict[str, AgentTask], list[str]]:
    """The run's AgentTasks: its tasks' by task name, its resolvers' by the task each resolves, and strays."""
    namespace = run.metadata.namespace or ""
    items = await ctx.kube.list(AGENTTASKS, namespace, labels.run_selector(run.name, labels.TASK_COMPONENT))
    wanted = {t.name for t in run.spec.tasks}
    tasks: dict[str, AgentTask] = {}
    resolvers: dict[str, AgentTask] = {}
    strays: list[str] = []
    for item in items:
        if not owned_by(item, uid):
            continue
        name = item["metadata"]["name"]
        try:
            child = parse_task(item)
        except ValidationError as exc:
            log.warning("AgentTask %s/%s is not valid, ignoring it: %s", namespace, name, exc.errors()[0].get("msg"))
            continue
        if child.spec.resolves is not None:
            resolvers[child.spec.resolves] = child
        elif child.spec.task in wanted:
            tasks[child.spec.task] = child
        else:
            strays.append(name)
    return tasks, resolvers, sorted(strays)


async def _observe_merge(ctx: Context, run: ParallelRun) -> MergeView:
    """The Job of the merge round the run's status names (the first before any)."""
    namespace = run.metadata.namespace or ""
    round_ = run.status.merge.round if run.status is not None and run.status.merge is not None else 1
    name = merge_job_name(run.name, round_)
    try:
        job = await ctx.kube.get(JOBS, namespace, name)
    except NotFound:
        return MergeView()
    if not owned_by(job, run.metadata.uid or ""):
        return MergeView(exists=True, outcome="Failed", message=f"Job {name} exists and does not belong to this run")
    outcome = job_outcome(job)
    pods = await ctx.kube.list(PODS, namespace, f"{labels.JOB_NAME}={name}")
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
    succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    if outcome is None and succeeded:
        # the pod's report is final even before the Job controller marks the Job complete
        outcome = "Succeeded"
    if outcome is None:
        return MergeView(exists=True)
    report = await _merge_report(ctx, namespace, merge_report_name(run.name, round_), succeeded or pods)
    return MergeView(exists=True, outcome=outcome, report=report, message=job_failure_message(job))


async def _merge_report(ctx: Context, namespace: str, configmap_name: str, pods: list[dict[str, Any]]):
    try:
        configmap = await ctx.kube.get(CONFIGMAPS, namespace, configmap_name)
        report = parse_merge_report((configmap.get("data") or {}).get(REPORT_KEY))
        if report is not None:
            return report
    except NotFound:
        pass
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if cs.get("name") == MERGE_CONTAINER and terminated:
                report = parse_merge_report(terminated.get("message"))
                if report is not None:
                    return report
        # a report larger than a termination message is whole in the log's last line
        try:
            report = parse_merge_report(await ctx.kube.pod_log(namespace, pod["metadata"]["name"], MERGE_CONTAINER))
        except KubeError:
            report = None
        if report is not None:
            return report
    return None


async def _apply(ctx: Context, key: Key, plan: RunPlan) -> None:
    for manifest in plan.create:
        try:
            await ctx.kube.create(manifest)
        except AlreadyExists:
            if manifest["kind"] == "AgentTask":
                await _check_name_owner(ctx, key, plan, manifest)
    patches = [(name, patch) for name, patch in plan.admit.items()]
    patches += [(name, {"spec": {"suspend": True}}) for name in plan.suspend]
    patches += [(name, {"spec": {"cancel": True}}) for name in plan.cancel]
    patches += [(name, {"spec": spec}) for name, spec in plan.respec.items()]
    patches += list(plan.skip.items())
    for name, patch in patches:
        with contextlib.suppress(NotFound):
            await ctx.kube.patch(AGENTTASKS, key.namespace, name, patch)
    for name in plan.delete:
        with contextlib.suppress(NotFound):
            await ctx.kube.delete(AGENTTASKS, key.namespace, name)


async def _check_name_owner(ctx: Context, key: Key, plan: RunPlan, manifest: dict[str, Any]) -> None:
    """An AgentTask of that name exists. Ours (a restart, a race) is fine; another run's is a
    name collision (run `a-b` task `c` and run `a` task `b-c` both make `a-b-c`): say so,
    since the task cannot start until one of them is renamed."""
    name = manifest["metadata"]["name"]
    with contextlib.suppress(NotFound):
        existing = await ctx.kube.get(AGENTTASKS, key.namespace, name)
        owner = (existing["metadata"].get("labels") or {}).get(labels.RUN)
        if owner != key.name:
            message = (f"AgentTask {name} for task {manifest['spec']['task']!r} already belongs to run {owner!r}; "
                       "rename this run or the task")
            log.warning("%s/%s: %s", key.namespace, key.name, message)
            plan.events.append(Event("Warning", "NameCollision", message))


async def _write_status(ctx: Context, body: dict[str, Any], plan: RunPlan) -> None:
    status = plan.status.wire()
    if status != body.get("status"):
        body["status"] = status
        await ctx.kube.replace_status(PARALLELRUNS, body)
