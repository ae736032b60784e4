"""`braid operator`: kopf with braid's handlers, settings from the environment (BRAID_*)."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from braid.api import GROUP, VERSION
from braid.kube import labels
from braid.settings import Settings

from . import handlers


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    # kopf's own watch streams authenticate as the kubernetes client library would
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.startup(registry=registry)(handlers.operator_startup)
    kopf.on.cleanup(registry=registry)(handlers.operator_cleanup)
    kopf.on.event(GROUP, VERSION, "parallelruns", registry=registry)(handlers.parallelrun_event)
    kopf.on.event(GROUP, VERSION, "agenttasks", registry=registry)(handlers.agenttask_event)
    kopf.on.event("v1", "pods", labels={labels.MANAGED_BY: labels.MANAGER}, registry=registry)(handlers.pod_event)
    kopf.on.event("batch", "v1", "jobs", labels={labels.MANAGED_BY: labels.MANAGER},
                  registry=registry)(handlers.job_event)
    return registry


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # handlers return nothing and keep no progress of their own; should one ever need
    # to, it goes to annotations, never into the status that braid owns
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # braid posts its own Events; kopf's would repeat every handler call
    settings.posting.enabled = False
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # only braid's own pods and Jobs, filtered by the API server
    settings.watching.label_selectors["v1", "pods"] = labels.MANAGED_SELECTOR
    settings.watching.label_selectors["batch", "v1", "jobs"] = labels.MANAGED_SELECTOR
    return settings


def run_operator(args: argparse.Namespace) -> int:
    settings = Settings()
    if getattr(args, "namespace", None):
        settings.namespaces = list(args.namespace)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kopf logs every handler call at INFO, its probe server every request
    logging.getLogger("kopf").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    liveness = None
    if settings.health_port and settings.health_port != settings.metrics_port:
        liveness = f"http://0.0.0.0:{settings.health_port}/healthz"
    kopf.run(
        registry=build_registry(),
        settings=operator_settings(),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        memo=kopf.Memo(settings=settings),
        liveness_endpoint=liveness,
    )
    return 0
