"""kopf handlers: start-up and clean-up own the shared objects; watch events only queue work.

Every object is reconciled by a worker that reads it fresh (parallelrun.py, agenttask.py),
so a handler never decides anything and returns nothing: kopf writes nothing into status.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import kopf

from braid.kube import labels
from braid.metrics import Metrics, serve

from .agenttask import reconcile_agenttask
from .client import Kube
from .context import Context
from .errors import Conflict, KubeError
from .parallelrun import reconcile_parallelrun
from .queue import Key, WorkQueue

log = logging.getLogger("braid.controller")

RECONCILERS = {"ParallelRun": reconcile_parallelrun, "AgentTask": reconcile_agenttask}
# someone wrote the object between our read and our write: read it again soon
CONFLICT_DELAY = 0.2


async def operator_startup(memo: kopf.Memo, **_: Any) -> None:
    settings = memo.settings
    metrics = Metrics()
    kube = Kube.from_environment(qps=settings.api_qps, burst=settings.api_burst, on_retry=metrics.api_retry)
    ctx = Context(settings=settings, kube=kube, metrics=metrics, queue=WorkQueue(),
                  instance=os.environ.get("HOSTNAME") or socket.gethostname())
    ctx.workers = [asyncio.create_task(_worker(ctx), name=f"braid-worker-{i}") for i in range(settings.workers)]
    memo.braid = ctx
    memo.metrics_server = await serve(metrics, settings.metrics_port, ctx.healthy)
    log.info("braid operator started: %d workers, metrics on :%d", settings.workers, settings.metrics_port)


async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.braid
    for worker in ctx.workers:
        worker.cancel()
    await asyncio.gather(*ctx.workers, return_exceptions=True)
    await memo.metrics_server.cleanup()
    await ctx.kube.close()


async def parallelrun_event(type: str | None, namespace: str, name: str, uid: str, memo: kopf.Memo,
                            **_: Any) -> None:
    ctx: Context = memo.braid
    key = Key("ParallelRun", namespace, name)
    if type == "DELETED":
        ctx.metrics.forget(uid)
        ctx.queue.drop(key)
        return
    ctx.queue.add(key)


async def agenttask_event(type: str | None, namespace: str, name: str, uid: str, labels: dict[str, str],
                          memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.braid
    key = Key("AgentTask", namespace, name)
    if type == "DELETED":
        ctx.metrics.forget(uid)
        ctx.queue.drop(key)
    else:
        ctx.queue.add(key)
    run = labels.get(_RUN)
    if run:
        ctx.queue.add(Key("ParallelRun", namespace, run))


async def pod_event(namespace: str, body: kopf.Body, labels: dict[str, str], memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.braid
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "AgentTask" and ref.get("controller"):
            ctx.queue.add(Key("AgentTask", namespace, ref["name"]))
    if labels.get(_COMPONENT) == _MERGE and labels.get(_RUN):
        ctx.queue.add(Key("ParallelRun", namespace, labels[_RUN]))


async def job_event(namespace: str, labels: dict[str, str], memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.braid
    if labels.get(_RUN):
        ctx.queue.add(Key("ParallelRun", namespace, labels[_RUN]))


# the handlers' `labels` argument shadows the module inside them
_RUN, _COMPONENT, _MERGE = labels.RUN, labels.COMPONENT, labels.MERGE


async def _worker(ctx: Context) -> None:
    while True:
        key = await ctx.queue.get()
        started = time.monotonic()
        try:
            again = await RECONCILERS[key.kind](ctx, key)
        except Conflict:
            ctx.queue.add_after(key, CONFLICT_DELAY)
        except KubeError as exc:
            ctx.metrics.reconcile_errors.labels(key.kind, type(exc).__name__).inc()
            delay = ctx.queue.retry(key)
            log.warning("%s: %s (again in %.1fs)", key, exc, delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ctx.metrics.reconcile_errors.labels(key.kind, type(exc).__name__).inc()
            delay = ctx.queue.retry(key)
            log.exception("%s: reconcile failed (again in %.1fs)", key, delay)
        else:
            ctx.queue.forget(key)
            if again is None:
                ctx.queue.drop(key)
            else:
                ctx.queue.add_after(key, again)
        finally:
            ctx.metrics.reconcile_duration.labels(key.kind).observe(time.monotonic() - started)
            ctx.queue.done(key)
