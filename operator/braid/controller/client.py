"""A thin async client of the Kubernetes API: JSON in, JSON out, braid errors instead of HTTP statuses.

Requests go through aiohttp (kopf's own HTTP library); the kubernetes package is used only
to read the kubeconfig or the in-cluster service account. Rate limited (settings.api_qps
and api_burst) and retried on 429, 5xx and connection errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from braid.api import GROUP, VERSION

from .errors import Unavailable, error_for

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_RETRY_WAIT = 30.0


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"
        path = f"{base}/namespaces/{namespace}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


PARALLELRUNS = Resource(GROUP, VERSION, "parallelruns")
AGENTTASKS = Resource(GROUP, VERSION, "agenttasks")
PODS = Resource("", "v1", "pods")
CONFIGMAPS = Resource("", "v1", "configmaps")
EVENTS = Resource("", "v1", "events")
JOBS = Resource("batch", "v1", "jobs")
BY_KIND = {
    "ParallelRun": PARALLELRUNS, "AgentTask": AGENTTASKS, "Pod": PODS, "ConfigMap": CONFIGMAPS, "Event": EVENTS,
    "Job": JOBS,
}


class RateLimiter:
    """A token bucket: `qps` requests a second on average, bursts of up to `burst`."""

    def __init__(self, qps: float, burst: int):
        self.rate = max(qps, 0.001)
        self.capacity = max(burst, 1)
        self.tokens = float(self.capacity)
        self.updated = time.monotonic()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


def load_configuration() -> k8s_client.Configuration:
    """In a pod, its service account; elsewhere $KUBECONFIG or ~/.kube/config."""
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        # $KUBECONFIG as it is now, not as it was when the kubernetes package was imported
        k8s_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    return configuration


def _ssl_context(configuration: k8s_client.Configuration) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Kube:
    def __init__(self, configuration: k8s_client.Configuration, *, qps: float = 20.0, burst: int = 40,
                 on_retry: Any = None, timeout: float = 60.0):
        self._configuration = configuration
        self._host = configuration.host.rstrip("/")
        self._limiter = RateLimiter(qps, burst)
        self._on_retry = on_retry or (lambda verb, why: None)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = _ssl_context(configuration)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls, **kwargs: Any) -> Kube:
        return cls(load_configuration(), **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # auth_settings() refreshes expiring tokens (exec plugins, projected service account tokens)
        for setting in self._configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"].title()] = setting["value"]
        return headers

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
        content_type: str = "application/json", text: bool = False,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl), timeout=self._timeout
            )
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        wait = 0.2
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self._limiter.acquire()
            try:
                async with self._session.request(method, self._host + path, params=params, data=data,
                                                 headers=headers) as response:
                    payload = await response.read()
                    if response.status < 400:
                        if text:
                            return payload.decode(errors="replace")
                        return json.loads(payload) if payload else {}
                    status = _json(payload)
                    message = f"{method} {path}: {status.get('message') or payload[:300].decode(errors='replace')}"
                    if response.status in RETRY_STATUSES and attempt < MAX_ATTEMPTS:
                        self._on_retry(method, str(response.status))
                        await asyncio.sleep(min(_retry_after(response.headers.get("Retry-After"), wait),
                                                MAX_RETRY_WAIT))
                        wait *= 2
                        continue
                    raise error_for(response.status, status.get("reason"), message)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt < MAX_ATTEMPTS:
                    self._on_retry(method, type(exc).__name__)
                    await asyncio.sleep(wait)
                    wait *= 2
                    continue
                raise Unavailable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        raise Unavailable(f"{method} {path}: gave up")  # pragma: no cover - the loop returns or raises

    # -- verbs -----------------------------------------------------------------------------------

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", resource.path(namespace, name))

    async def list(self, resource: Resource, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else None
        return (await self.request("GET", resource.path(namespace), params=params)).get("items") or []

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        resource = BY_KIND[manifest["kind"]]
        return await self.request("POST", resource.path(manifest["metadata"]["namespace"]), body=manifest)

    async def patch(self, resource: Resource, namespace: str, name: str, patch: dict[str, Any],
                    subresource: str | None = None) -> dict[str, Any]:
        return await self.request("PATCH", resource.path(namespace, name, subresource), body=patch,
                                  content_type="application/merge-patch+json")

    async def replace_status(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT the status subresource; the object's resourceVersion makes it fail with Conflict when stale."""
        meta = obj["metadata"]
        return await self.request("PUT", resource.path(meta["namespace"], meta["name"], "status"), body=obj)

    async def delete(self, resource: Resource, namespace: str, name: str,
                     propagation: str = "Background") -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        await self.request("DELETE", resource.path(namespace, name), body=body)

    async def pod_log(self, namespace: str, name: str, container: str, tail_lines: int = 20) -> str:
        params = {"container": container, "tailLines": str(tail_lines)}
        return await self.request("GET", PODS.path(namespace, name, "log"), params=params, text=True)


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _retry_after(header: str | None, default: float) -> float:
    try:
        return float(header) if header else default
    except ValueError:
        return default
