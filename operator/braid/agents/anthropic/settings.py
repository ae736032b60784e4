"""The anthropic backend's settings: from the AgentSpec, a few environment knobs, and the API key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..base import AgentContext, AgentError, ModelAccess

DEFAULT_MAX_TURNS = 50
DEFAULT_MAX_TOKENS = 8192
DEFAULT_MAX_RETRIES = 4
DEFAULT_REQUEST_TIMEOUT = 600.0

ENV_MAX_RETRIES = "BRAID_ANTHROPIC_MAX_RETRIES"
ENV_REQUEST_TIMEOUT = "BRAID_ANTHROPIC_TIMEOUT"


@dataclass(frozen=True)
class Settings:
    model: str
    max_turns: int
    max_tokens: int
    system_prompt: str | None
    max_retries: int
    """Retries of a rate-limited (429), overloaded or failed (5xx) request, with backoff."""
    request_timeout: float
    """Seconds one request may take; also capped by what is left of the task's timeout."""
    base_url: str | None = None
    """The key-injecting proxy the runner started; agent.env's ANTHROPIC_BASE_URL is where it forwards to."""

    @classmethod
    def of(cls, ctx: AgentContext, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the spec; the knobs from agent.env first, then braid's own environment.

        agent.env counts because it is the one place a ParallelRun can set them for
        pods, whose environment the operator builds.
        """
        agent = ctx.agent
        env = {**(os.environ if env is None else env), **(agent.env or {})}
        return cls(
            model=agent.effective_model,
            max_turns=agent.max_turns or DEFAULT_MAX_TURNS,
            max_tokens=agent.max_tokens or DEFAULT_MAX_TOKENS,
            system_prompt=agent.system_prompt,
            max_retries=int(_number(env, ENV_MAX_RETRIES, DEFAULT_MAX_RETRIES, 0, 20)),
            request_timeout=_number(env, ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, 1, 3600),
            base_url=ctx.model.url if ctx.model is not None else None,
        )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise AgentError("InvalidAgent", f"{name}={text!r}: expected a number from {low:g} to {high:g}")
    return value


def model_access(ctx: AgentContext) -> ModelAccess:
    """How this task reaches the model. The runner sets it up when it holds an API key."""
    if ctx.model is None:
        raise AgentError(
            "MissingAPIKey",
            "no Anthropic API key: set agent.apiKeySecret (cluster), --api-key-file or ANTHROPIC_API_KEY (local)",
        )
    return ctx.model
