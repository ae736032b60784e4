"""Pure builders: the manifests the operator creates, from the api models and the settings.

Nothing here talks to a cluster: every function takes typed input and returns a dict.
"""

from . import labels
from .agenttask import agent_task, resolver_agent_task, run_owner
from .event import Event, event_manifest
from .job import REPORT_KEY, merge_job, merge_report_configmap
from .meta import owned_by, owner_reference
from .names import agenttask_name, merge_job_name, merge_report_name, pod_name
from .pod import agent_pod

__all__ = [
    "REPORT_KEY", "Event", "agent_pod", "agent_task", "agenttask_name", "event_manifest", "labels", "merge_job",
    "merge_job_name", "merge_report_configmap", "merge_report_name", "owned_by", "owner_reference",
    "pod_name", "resolver_agent_task", "run_owner",
]
