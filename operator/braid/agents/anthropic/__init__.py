"""The anthropic backend: Claude works on the task through a tool-use loop with the Messages API."""

from .loop import AnthropicAgent

__all__ = ["AnthropicAgent"]
