"""What braid sends: the system prompt, the first user message, and where the cache breakpoints go.

The system prompt and tool definitions are the same for every task of every run, so
they form one cached prefix that later turns, and other tasks, read from the cache.
Task specifics go in the first user message.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..base import AgentContext
from ..paths import OutsideWorktree, resolve_inside
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


NOTES_FILES = ("CLAUDE.md", "AGENTS.md")
NOTES_LIMIT = 20_000
"""Characters read of each notes file; the rest is cut, and the model is told so."""


def repository_notes(workdir: Path) -> str | None:
    """The repository's own notes for agents (CLAUDE.md, AGENTS.md at its root), bounded; None without any.

    A file that is a symlink out of the working copy, or into .git, is not read.
    """
    parts = []
    for name in NOTES_FILES:
        try:
            path = resolve_inside(workdir, name)
            if not path.is_file():
                continue
            with path.open("rb") as fh:
                data = fh.read(NOTES_LIMIT * 4 + 1)
        except (OutsideWorktree, OSError):
            continue
        text = data.decode(errors="replace")
        if len(text) > NOTES_LIMIT:
            text = text[:NOTES_LIMIT] + f"\n[... {name} is longer; the rest is not shown ...]"
        parts.append(f'<file name="{name}">\n{text.strip()}\n</file>')
    if not parts:
        return None
    return ("The repository has notes for agents working on it. Follow them where they do not contradict "
            "the rules above or the task.\n\n" + "\n\n".join(parts))


def system_blocks(extra: str | None, notes: str | None = None) -> list[dict[str, Any]]:
    """braid's prompt (cached: the same for every task), then the repository's notes after the breakpoint."""
    text = SYSTEM_PROMPT + (f"\n\n{extra.strip()}" if extra and extra.strip() else "")
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text, "cache_control": EPHEMERAL}]
    if notes:
        blocks.append({"type": "text", "text": notes})
    return blocks


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
