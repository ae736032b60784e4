"""What every reconcile needs, created at start-up and kept on kopf's memo."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from braid.kube import Event, event_manifest
from braid.metrics import Metrics
from braid.settings import Settings

from .client import EVENTS, Kube, Resource
from .errors import KubeError, NotFound
from .queue import Key, WorkQueue

log = logging.getLogger("braid.controller")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    kube: Kube
    metrics: Metrics
    queue: WorkQueue
    instance: str
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    _sequence: Any = field(default_factory=itertools.count)

    async def read_live(self, resource: Resource, key: Key) -> dict[str, Any] | None:
        """The object, or None when it is gone or being deleted (garbage collection does the rest)."""
        try:
            body = await self.kube.get(resource, key.namespace, key.name)
        except NotFound:
            return None
        return None if body["metadata"].get("deletionTimestamp") else body

    def healthy(self) -> bool:
        return bool(self.workers) and not any(w.done() for w in self.workers)

    async def post_events(self, involved: dict[str, Any], events: list[Event]) -> None:
        """Events are best effort: a failure to post one is logged, never retried into a second copy."""
        for event in events:
            suffix = f"{time.time_ns():x}{next(self._sequence) % 1000:03d}"
            stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
            manifest = event_manifest(involved, event, stamp, suffix, self.instance)
            try:
                await self.kube.request("POST", EVENTS.path(manifest["metadata"]["namespace"]), body=manifest)
            except KubeError as exc:
                log.warning("could not post event %s on %s: %s", event.reason, involved["metadata"]["name"], exc)
