"""Keeping agent-run code away from what braid holds: a sandbox for its processes, a proxy for its key."""

from .proxy import PROXY_ENV, ModelProxy, placeholder_key
from .sandbox import Sandbox, SandboxUnavailable, find_sandbox

__all__ = ["PROXY_ENV", "ModelProxy", "Sandbox", "SandboxUnavailable", "find_sandbox", "placeholder_key"]
