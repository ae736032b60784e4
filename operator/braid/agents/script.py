"""The `script` backend: deterministic edits described in the spec, for demos and tests."""

from __future__ import annotations

import time

from braid.api import ScriptStep

from .base import AgentContext, AgentOutcome
from .paths import OutsideWorktree, resolve_inside


class ScriptAgent:
    def run(self, ctx: AgentContext) -> AgentOutcome:
        steps = ctx.agent.script.steps if ctx.agent.script else []
        deadline = time.monotonic() + ctx.timeout_seconds
        done: list[str] = []
        for i, step in enumerate(steps):
            if ctx.cancel.is_set():
                return AgentOutcome(False, reason="Cancelled", message=f"cancelled before step {i}")
            try:
                problem = self._apply(ctx, step, deadline)
            except OutsideWorktree as exc:
                problem = str(exc)
            except OSError as exc:
                problem = f"{step.path}: {exc.strerror}"
            if problem == "Timeout":
                return AgentOutcome(False, reason="Timeout", message=f"timed out after {ctx.timeout_seconds:g}s")
            if problem == "Cancelled":
                return AgentOutcome(False, reason="Cancelled", message=f"cancelled during step {i}")
            if problem:
                return AgentOutcome(False, reason="AgentFailed", message=f"script step {i} ({step.op}): {problem}")
            if step.op not in ("sleep", "require"):
                done.append(f"{step.op} {step.path}")
        summary = "Scripted edits:\n" + "\n".join(f"- {d}" for d in done) if done else "No edits."
        return AgentOutcome(True, summary=summary)

    def _apply(self, ctx: AgentContext, step: ScriptStep, deadline: float) -> str | None:
        if step.op == "sleep":
            wait = min(step.seconds or 0.0, max(0.0, deadline - time.monotonic()))
            if ctx.cancel.wait(wait):
                return "Cancelled"
            return "Timeout" if time.monotonic() >= deadline else None
        if step.op == "fail":
            return step.message or "the script says fail"
        target = resolve_inside(ctx.workdir, step.path or "")
        if step.op == "require":
            return None if target.exists() else f"{step.path} does not exist"
        if step.op == "write":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.content or "")
        elif step.op == "append":
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a") as fh:
                fh.write(step.content or "")
        elif step.op == "replace":
            text = target.read_text()
            if text.count(step.old or "") != 1:
                return f"{step.path}: expected exactly one occurrence of the old text, found {text.count(step.old or '')}"
            target.write_text(text.replace(step.old or "", step.new or "", 1))
        elif step.op == "delete":
            target.unlink()
        return None
