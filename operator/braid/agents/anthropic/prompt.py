"""What braid sends: the system prompt, the first user message, and where the cache breakpoints go.

The system prompt and tool definitions are the same for every task of every run, so
they form one cached prefix that later turns, and other tasks, read from the cache.
Task specifics go in the first user message.
"""

from __future__ import annotations

import copy
from typing import Any

from ..base import AgentContext
from .tools import DEFINITIONS

EPHEMERAL = {"type": "ephemeral"}

SYSTEM_PROMPT = """\
You are a coding agent. You work alone, without a human to answer questions, on one task \
in a git repository whose root is your working directory.

- Use the tools to look around, change files and run commands (builds, tests, linters). \
Paths are relative to the repository root; you cannot reach files outside it.
- Make the change the task asks for, completely, and check it the way the project does \
(run its tests when there are any). Keep to the task: do not reformat or rewrite unrelated code.
- Do not commit, push, switch branches or edit .git: when you finish, everything in the \
working tree is committed and pushed for you, even if you stop early.
- There is no network access.
- When you are done, answer with a short summary and call no more tools: the first line \
says what you changed, in the imperative (it becomes a commit message), the following \
lines give the details and anything left undone."""


def system_blocks(extra: str | None) -> list[dict[str, Any]]:
    text = SYSTEM_PROMPT + (f"\n\n{extra.strip()}" if extra and extra.strip() else "")
    return [{"type": "text", "text": text, "cache_control": EPHEMERAL}]


def tool_definitions() -> list[dict[str, Any]]:
    """The tool list with a breakpoint on its last entry, which caches all of them."""
    tools = copy.deepcopy(DEFINITIONS)
    tools[-1]["cache_control"] = EPHEMERAL
    return tools


def first_message(ctx: AgentContext) -> dict[str, Any]:
    parts = [ctx.prompt.strip()]
    if ctx.paths:
        parts.append("This task is expected to work in: " + ", ".join(ctx.paths))
    if ctx.depends_on:
        parts.append(
            "It builds on the tasks " + ", ".join(ctx.depends_on)
            + ": their changes are already merged into this working tree."
        )
    parts.append(f"(braid run {ctx.run}, task {ctx.task})")
    return {"role": "user", "content": [{"type": "text", "text": "\n\n".join(parts)}]}


def with_cache_mark(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` with a breakpoint on the last block of the last user message.

    The breakpoint slides forward every turn, so each request reads the conversation
    so far from the cache and writes only what is new. The history itself stays
    unmarked: at most four breakpoints are allowed per request.
    """
    out = list(messages)
    for i in range(len(out) - 1, -1, -1):
        if out[i]["role"] == "user" and out[i]["content"]:
            content = list(out[i]["content"])
            content[-1] = {**content[-1], "cache_control": EPHEMERAL}
            out[i] = {**out[i], "content": content}
            break
    return out
