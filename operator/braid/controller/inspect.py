"""`braid status`, `logs` and `cancel` for a run on a cluster, through the kubeconfig."""

from __future__ import annotations

import time
from collections.abc import Iterator

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from braid.api import GROUP, VERSION, AgentTask, ParallelRun
from braid.api.status import ENDED_TASK_PHASES
from braid.kube.names import agenttask_name

from .client import load_configuration


class ClusterError(RuntimeError):
    """The cluster could not answer, or has no such object; the message says which."""


class Cluster:
    def __init__(self, namespace: str | None) -> None:
        try:
            configuration = load_configuration()
        except (k8s_config.ConfigException, OSError) as exc:
            raise ClusterError(f"no cluster to talk to: {exc}") from None
        api = k8s_client.ApiClient(configuration)
        self.custom = k8s_client.CustomObjectsApi(api)
        self.core = k8s_client.CoreV1Api(api)
        if namespace is None:
            try:
                _, context = k8s_config.list_kube_config_contexts()
                namespace = (context or {}).get("context", {}).get("namespace")
            except (k8s_config.ConfigException, OSError):
                namespace = None
        self.namespace = namespace or "default"

    def _get(self, plural: str, name: str) -> dict:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                raise ClusterError(f"{plural} {self.namespace}/{name} not found") from None
            raise ClusterError(f"reading {plural} {self.namespace}/{name}: {exc.status} {exc.reason}") from None

    def run(self, name: str) -> ParallelRun:
        try:
            return ParallelRun.model_validate(self._get("parallelruns", name))
        except ValidationError as exc:
            raise ClusterError(f"parallelrun {self.namespace}/{name} does not read as a ParallelRun: {exc}") from None

    def task(self, run: str, task: str) -> AgentTask:
        try:
            return AgentTask.model_validate(self._get("agenttasks", agenttask_name(run, task)))
        except ValidationError as exc:
            raise ClusterError(f"agenttask of task {task!r} does not read as an AgentTask: {exc}") from None

    def cancel(self, name: str) -> None:
        """Set spec.cancel: the operator stops every agent (what each wrote is pushed); the run ends Cancelled."""
        self.run(name)
        try:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "parallelruns", name,
                                                       {"spec": {"cancel": True}})
        except ApiException as exc:
            raise ClusterError(f"cancelling parallelrun {self.namespace}/{name}: {exc.status} {exc.reason}") from None

    def logs(self, run: str, task: str, *, follow: bool, poll: float = 1.0) -> Iterator[tuple[int, bytes]]:
        """The agent container's log of the task's latest attempt; with `follow`, each new attempt's too."""
        shown = 0
        while True:
            state = self.task(run, task).status
            attempt = state.attempts if state is not None else 0
            if attempt > shown and state is not None and state.pod:
                shown = attempt
                yield from self._pod_log(state.pod, attempt, follow=follow)
            if not follow:
                return
            if state is not None and state.phase in ENDED_TASK_PHASES and shown >= attempt:
                return
            time.sleep(poll)

    def _pod_log(self, pod: str, attempt: int, *, follow: bool) -> Iterator[tuple[int, bytes]]:
        for _ in range(60 if follow else 1):
            try:
                stream = self.core.read_namespaced_pod_log(pod, self.namespace, container="agent", follow=follow,
                                                           _preload_content=False)
                break
            except ApiException as exc:
                # the container has not started yet (400), or the pod is gone (404)
                if not follow or exc.status == 404:
                    return
                time.sleep(1.0)
        else:
            return
        try:
            for chunk in stream.stream(65536):
                yield attempt, chunk
        finally:
            stream.release_conn()
