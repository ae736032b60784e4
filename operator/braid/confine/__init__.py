"""Keeping agent-run code away from what braid holds: a sandbox for its processes, a proxy for its key,
limits on what its processes use."""

from .limits import CgroupSetup, Limits, LimitsUnavailable, Placement
from .proxy import PROXY_ENV, ModelProxy, placeholder_key
from .sandbox import Sandbox, SandboxUnavailable, find_sandbox

__all__ = ["PROXY_ENV", "CgroupSetup", "Limits", "LimitsUnavailable", "ModelProxy", "Placement", "Sandbox",
           "SandboxUnavailable", "find_sandbox", "placeholder_key"]
