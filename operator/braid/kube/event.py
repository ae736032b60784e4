"""core/v1 Events: what `kubectl describe` shows under Events."""

from __future__ import annotations

from typing import Any

from braid.plan.events import Event
from braid.text import printable

MESSAGE_LIMIT = 1024
COMPONENT = "braid-operator"


def event_manifest(
    involved: dict[str, Any], event: Event, timestamp: str, name_suffix: str, instance: str
) -> dict[str, Any]:
    """The Event about `involved` (a manifest with apiVersion, kind and metadata)."""
    meta = involved["metadata"]
    # agent output and file names reach `kubectl describe` escaped: no control character moves a terminal
    text = printable(event.message)
    message = text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{name_suffix}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": event.type,
        "reason": event.reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": f"braid.dev/{COMPONENT}",
        "reportingInstance": instance,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }
