"""The seam between the runner and an agent backend."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from braid.api import AgentSpec, Budget, Usage
from braid.confine import Placement, Sandbox


@dataclass(frozen=True)
class ModelAccess:
    """The model endpoint an agent is given: braid's key-injecting proxy and a placeholder key.

    The real key stays with the proxy; nothing the agent runs can read it.
    """

    url: str
    key: str


@dataclass
class AgentContext:
    """Everything a backend may use. The backend works only inside `workdir`."""

    run: str
    task: str
    prompt: str
    workdir: Path
    agent: AgentSpec
    timeout_seconds: float
    paths: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    budget: Budget | None = None
    """What this attempt may spend (the task's share less `spent`); the backend stops when it is reached."""
    spent: Usage | None = None
    """What the task's earlier attempts spent, as braid counted them."""
    transcript: Path | None = None
    """Where a backend that keeps a conversation (anthropic) finds the one an earlier attempt saved, if
    the file exists, and keeps its own as it goes. braid's runner pushes it with the work."""
    model: ModelAccess | None = None
    """How the agent reaches the model, when braid holds an API key: a proxy and a placeholder key."""
    redact: Callable[[str], str] = lambda text: text
    """Removes the secrets braid holds from text the agent or its logs would see."""
    sandbox: Sandbox | None = None
    """Where every process the agent starts runs (None: unconfined, said loudly by the launcher)."""
    placement: Placement = field(default_factory=Placement)
    """The cgroup (or rlimit) every process the agent starts runs under, before it runs anything."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("braid.agent"))
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set when the task is being cancelled (SIGTERM, Ctrl-C): stop soon, keep the work."""


@dataclass
class AgentOutcome:
    ok: bool
    summary: str = ""
    """The agent's final words; they become the commit message body."""
    usage: Usage = field(default_factory=Usage)
    reason: str | None = None
    """CamelCase reason on failure: AgentFailed, Timeout, BudgetExceeded, Cancelled, InvalidAPIKey, ..."""
    message: str | None = None
    killed: bool = False
    """The agent's process died by SIGKILL (the kernel's answer to a cgroup out of memory, among others)."""


class Agent(Protocol):
    def run(self, ctx: AgentContext) -> AgentOutcome: ...


class AgentError(Exception):
    """A backend cannot start (bad settings): the task fails with `reason`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
