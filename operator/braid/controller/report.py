"""The merge pod's side of a report too large for a termination message: write it into its ConfigMap.

The operator creates the ConfigMap (empty, owned by the run) with the merge Job and
reads it before the termination message. Writing needs a token, so it works only when
settings.merge_service_account names a ServiceAccount allowed to patch ConfigMaps; without
one the operator falls back to the last line of the merge container's log.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from kubernetes.config import ConfigException

from braid.kube import REPORT_KEY

from .client import CONFIGMAPS, Kube
from .errors import KubeError

log = logging.getLogger("braid.merge.report")
CONFIGMAP_ENV = "BRAID_MERGE_REPORT_CONFIGMAP"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def publish_merge_report(text: str) -> bool:
    """Store the whole report in the run's report ConfigMap; False when this pod cannot."""
    name = os.environ.get(CONFIGMAP_ENV)
    if not name or not NAMESPACE_FILE.exists():
        return False
    namespace = NAMESPACE_FILE.read_text().strip()

    async def write() -> None:
        kube = Kube.from_environment()
        try:
            await kube.patch(CONFIGMAPS, namespace, name, {"data": {REPORT_KEY: text}})
        finally:
            await kube.close()

    try:
        asyncio.run(write())
    except (KubeError, ConfigException, OSError) as exc:
        log.warning("could not write the merge report to ConfigMap %s: %s", name, exc)
        return False
    return True
