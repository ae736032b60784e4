"""Agent backends: anthropic (tool-use loop), command (any CLI), script (deterministic edits)."""

from __future__ import annotations

from .base import Agent, AgentContext, AgentError, AgentOutcome, ModelAccess


def get_agent(backend: str) -> Agent:
    """The backend named in the spec. Imported lazily so a script run needs no SDK."""
    if backend == "script":
        from .script import ScriptAgent

        return ScriptAgent()
    if backend == "command":
        from .command import CommandAgent

        return CommandAgent()
    if backend == "anthropic":
        from .anthropic import AnthropicAgent

        return AnthropicAgent()
    raise AgentError("InvalidBackend", f"agent.backend: unknown backend {backend!r}")


__all__ = ["Agent", "AgentContext", "AgentError", "AgentOutcome", "ModelAccess", "get_agent"]
