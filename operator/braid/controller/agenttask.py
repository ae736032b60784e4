"""Reconcile one AgentTask: read it and its pods, decide (decide.task), apply, report."""

from __future__ import annotations

import contextlib
import logging

from pydantic import ValidationError

from braid.kube import agent_pod, labels, owned_by
from braid.plan.clock import parse

from .client import AGENTTASKS, PODS
from .context import Context, utcnow
from .decide import PodView, TaskPolicy, decide_task
from .errors import AlreadyExists, NotFound
from .parsing import parse_task
from .queue import Key

log = logging.getLogger("braid.controller.agenttask")
# a pod we just failed to create because it exists: look again soon and adopt it
ADOPT_DELAY = 1.0


async def reconcile_agenttask(ctx: Context, key: Key) -> float | None:
    """Converge one AgentTask; return when to look again (None: it is gone)."""
    body = await ctx.read_live(AGENTTASKS, key)
    if body is None:
        return None
    meta = body["metadata"]
    try:
        task = parse_task(body)
    except ValidationError as exc:
        log.warning("%s: not a valid AgentTask, leaving it alone: %s", key, exc.errors()[0].get("msg"))
        return ctx.settings.resync_seconds
    spec = task.spec
    pods = await ctx.kube.list(PODS, key.namespace, labels.task_pods_selector(spec.run, spec.task))
    views = [PodView.from_manifest(p) for p in pods if owned_by(p, meta["uid"])]
    policy = TaskPolicy(ctx.settings.deadline_grace_seconds, ctx.settings.max_interruptions)
    plan = decide_task(task, views, utcnow(), policy)

    if plan.create_attempt is not None and plan.attempt_spec is not None:
        try:
            attempt = task.model_copy(update={"spec": plan.attempt_spec})
            await ctx.kube.create(agent_pod(attempt, plan.create_attempt, ctx.settings))
        except AlreadyExists:
            return ADOPT_DELAY
    for name in plan.delete_pods:
        with contextlib.suppress(NotFound):
            await ctx.kube.delete(PODS, key.namespace, name)
    status = plan.status.wire()
    if status != body.get("status"):
        body["status"] = status
        await ctx.kube.replace_status(AGENTTASKS, body)
    await ctx.post_events(body, plan.events)

    ctx.metrics.task_phase(meta["uid"], key.namespace, plan.status.phase)
    for usage in plan.usage:
        ctx.metrics.usage(key.namespace, spec.agent.effective_model, usage)
    if plan.ended:
        started, finished = parse(plan.status.started_at), parse(plan.status.finished_at)
        if started and finished:
            ctx.metrics.task_duration.labels(key.namespace, plan.status.phase).observe(
                (finished - started).total_seconds()
            )
    if plan.requeue_after is None:
        return ctx.settings.resync_seconds
    return min(plan.requeue_after, ctx.settings.resync_seconds)
