"""Prometheus metrics of the operator, served with /healthz on settings.metrics_port.

Gauges of runs and tasks by phase are computed at scrape time from what the reconcilers
last saw, so a restarted operator reports the truth as soon as it has looked at each
object once. Counters (tokens, cost, conflicts) count what this process observed.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from braid.api import Usage

TASK_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _PhaseCollector(Collector):
    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily("braid_runs", "ParallelRuns by phase.", labels=["namespace", "phase"])
        for (namespace, phase), n in sorted(Tally(self._metrics.runs.values()).items()):
            runs.add_metric([namespace, phase], n)
        yield runs
        tasks = GaugeMetricFamily("braid_tasks", "AgentTasks by phase.", labels=["namespace", "phase"])
        for (namespace, phase), n in sorted(Tally(self._metrics.tasks.values()).items()):
            tasks.add_metric([namespace, phase], n)
        yield tasks
        running = GaugeMetricFamily("braid_running_agents", "Agent pods at work (AgentTasks in phase Running).",
                                    labels=["namespace"])
        busy = Tally(ns for ns, phase in self._metrics.tasks.values() if phase == "Running")
        for namespace, n in sorted(busy.items()):
            running.add_metric([namespace], n)
        yield running


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs: dict[str, tuple[str, str]] = {}
        self.tasks: dict[str, tuple[str, str]] = {}
        self.registry.register(_PhaseCollector(self))
        r = self.registry
        self.task_duration = Histogram(
            "braid_task_duration_seconds", "Time from a task's first attempt to its end.",
            ["namespace", "phase"], buckets=TASK_DURATION_BUCKETS, registry=r,
        )
        self.tokens = Counter("braid_tokens", "Tokens used by agents.", ["namespace", "model", "kind"], registry=r)
        self.cost = Counter("braid_cost_usd", "USD spent by agents.", ["namespace", "model"], registry=r)
        self.runs_finished = Counter("braid_runs_finished", "ParallelRuns that reached a final phase.",
                                     ["namespace", "phase"], registry=r)
        self.merge_conflicts = Counter("braid_merge_conflicts", "Conflicting files found by merges.",
                                       ["namespace"], registry=r)
        self.reconcile_duration = Histogram("braid_reconcile_duration_seconds", "Time of one reconcile.", ["kind"],
                                            buckets=RECONCILE_BUCKETS, registry=r)
        self.reconcile_errors = Counter("braid_reconcile_errors", "Reconciles that failed.", ["kind", "error"],
                                        registry=r)
        self.api_retries = Counter("braid_api_retries", "API requests retried after 429, 5xx or a connection error.",
                                   ["verb", "reason"], registry=r)

    # -- what the reconcilers report ---------------------------------------------------------------

    def run_phase(self, uid: str, namespace: str, phase: str) -> None:
        self.runs[uid] = (namespace, phase)

    def task_phase(self, uid: str, namespace: str, phase: str) -> None:
        self.tasks[uid] = (namespace, phase)

    def forget(self, uid: str) -> None:
        self.runs.pop(uid, None)
        self.tasks.pop(uid, None)

    def usage(self, namespace: str, model: str, usage: Usage) -> None:
        for kind, n in (("input", usage.input_tokens), ("output", usage.output_tokens),
                        ("cache_write", usage.cache_write_tokens), ("cache_read", usage.cache_read_tokens)):
            if n:
                self.tokens.labels(namespace, model, kind).inc(n)
        if usage.cost_usd:
            self.cost.labels(namespace, model).inc(usage.cost_usd)

    def api_retry(self, verb: str, reason: str) -> None:
        self.api_retries.labels(verb, reason).inc()

    # -- serving -----------------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: Metrics, port: int, healthy: Callable[[], bool], host: str = "0.0.0.0") -> web.AppRunner:
    """Start /metrics and /healthz on `port`; stop with `await runner.cleanup()`."""

    async def metrics_handler(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_handler(_request: web.Request) -> web.Response:
        if healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="reconcile workers are not running\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
