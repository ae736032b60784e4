"""Conflicts an agent resolves (spec.merge.resolve strategy agent): which ones, and the resolver task. Pure.

The merge prepares a resolution branch for a conflicting task whose conflicts an agent rule
takes (the integration so far merged with the task's branch, markers committed) and reports
it as pending; `plan.step` then runs one resolver task per pending conflict, with the spec
built here, and merges again once they have ended. Both launchers run resolvers as they run
tasks: same backends, limits, retries and budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from braid.api import AgentTaskSpec, MergeStatus, ParallelRun, Resolution, resolver_name
from braid.api.parallelrun import ResolveRule

from .risk import RESOLVABLE_KINDS, path_matches

MAX_ROUNDS = 3
"""Merges of one run: the first, and at most two more after resolvers. Each task gets one resolver."""

PROMPT_LIMIT = 65536
SIDE_PROMPT_LIMIT = 8192


def handed_out(merge: MergeStatus) -> list[Resolution]:
    """The conflicts the merge's round handed to resolvers, whose resolvers run next (not those it settled
    with what an earlier run's resolver made)."""
    return [r for r in merge.resolutions if r.round == merge.round and r.commit is None and r.message is None]


def first_rule(rules: Sequence[ResolveRule], path: str) -> ResolveRule | None:
    for rule in rules:
        if any(path_matches(glob, path) for glob in rule.paths):
            return rule
    return None


def agent_rule(rules: Sequence[ResolveRule], files: Iterable[tuple[str, str]]) -> int | None:
    """The index of the agent rule that takes a task's conflict, given its (path, kind) pairs: some file's first
    matching rule is an agent rule, and each other file's is one too or a file rule that resolves its kind.
    None: the conflict stays as it is."""
    found: int | None = None
    for path, kind in files:
        rule = first_rule(rules, path)
        if rule is None:
            return None
        if rule.strategy == "agent":
            found = rules.index(rule) if found is None else found
        elif kind not in RESOLVABLE_KINDS:
            return None
    return found


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n[... trimmed ...]"


def resolver_prompt(run: ParallelRun, pending: Resolution, rule: ResolveRule) -> str:
    """The resolver's prompt: the conflict report and what each side was asked to do."""
    task = run.spec.task(pending.task)
    others = [run.spec.task(o) for o in pending.collides_with if any(t.name == o for t in run.spec.tasks)]
    lines = [
        f"Resolve the merge conflicts of task {task.name} of the run {run.name}.",
        "",
        "The checked-out branch merges the integration of the tasks merged so far with the branch of task "
        f"{task.name}. Git could not merge the files below; they are committed with conflict markers "
        "(<<<<<<<, =======, >>>>>>>).",
        "",
        *[f"- {path}" for path in pending.files],
        "",
        "Edit each of these files so that it keeps what both sides meant to do, and remove every conflict marker. "
        "Change nothing else. braid commits what you leave; it is merged only when no marker is left.",
        "",
        f"Task {task.name} was asked:",
        _trim(task.prompt, SIDE_PROMPT_LIMIT),
    ]
    for other in others:
        lines += ["", f"Task {other.name}, already merged and changing the same files, was asked:",
                  _trim(other.prompt, SIDE_PROMPT_LIMIT)]
    if rule.prompt:
        lines += ["", rule.prompt]
    return _trim("\n".join(lines) + "\n", PROMPT_LIMIT)


def resolver_spec(run: ParallelRun, pending: Resolution) -> AgentTaskSpec:
    """The resolver task of one pending conflict, as both launchers run it. It resumes the resolution branch
    at the commit braid prepared (its record of what it pushed there), with the conflicting task's agent,
    limits, timeout and retries, and the agent rule's overrides."""
    rules = run.spec.merge.resolve
    rule = rules[pending.rule] if pending.rule < len(rules) else ResolveRule(strategy="agent")
    task = run.spec.task(pending.task)
    return AgentTaskSpec(
        run=run.name,
        task=resolver_name(task.name),
        resolves=task.name,
        prompt=resolver_prompt(run, pending, rule),
        paths=pending.files[:64],
        repo=run.spec.repo,
        branch=pending.branch,
        last_pushed=pending.prepared,
        agent=run.spec.agent_for(task).overlaid(rule.agent),
        resources=run.spec.resources_for(task),
        timeout_seconds=run.spec.task_timeout_seconds,
        retry=run.spec.retry,
    )
