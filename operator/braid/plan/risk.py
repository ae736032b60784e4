"""Conflicts found early: the run's conflictRisk from what each task saw when it succeeded. Pure.

A task's runner, right after pushing a succeeding attempt, merges its commit with every
other task branch of the run (git merge-tree, no checkout) and reports the branches it
conflicts with and at which commit (TaskResult.conflictRisk). The run's status keeps a
pair of tasks when:

- both have succeeded, and the commit the reporter saw for the other is the other's
  commit now (a pair seen against an attempt that later changed is dropped; the task
  that succeeds later is the one that sees the other at its final commit);
- neither depends on the other, directly or not (the dependent's branch contains the
  dependency's work);
- some file is left that no spec.merge.resolve rule resolves.

Pairs are kept in name order, at most MAX_RISK_PAIRS, each with at most MAX_RISK_FILES
files; conflictRiskTruncated says when some were left out here or by a reporter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from braid.api import MAX_RISK_FILES, MAX_RISK_PAIRS, AgentTaskStatus, ConflictRisk, ParallelRun, ResolveRule, RiskFile

from .dag import nodes_of, upstream
from .events import Event

RESOLVABLE_KINDS = frozenset({"content", "add/add"})
"""The conflicts a resolve rule can settle: both sides changed the same file's lines."""


@lru_cache(maxsize=512)
def _pattern(glob: str) -> re.Pattern[str]:
    anchored = "/" in glob.strip("/")
    glob = glob.strip("/")
    out = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    body = "".join(out)
    return re.compile(body if anchored else f"(?:.*/)?{body}", re.DOTALL)


def path_matches(glob: str, path: str) -> bool:
    """`path` (repository-relative, '/'-separated) matches the rule pattern `glob` (see ResolveRule.paths)."""
    return _pattern(glob).fullmatch(path) is not None


def resolve_strategy(rules: Sequence[ResolveRule], path: str, kind: str) -> str | None:
    """The file strategy (union, ours, theirs) of the first rule matching `path`, for a conflict of `kind` such a
    rule can resolve; else None (also when the first matching rule hands the file to an agent)."""
    if kind not in RESOLVABLE_KINDS:
        return None
    for rule in rules:
        if any(path_matches(glob, path) for glob in rule.paths):
            return None if rule.strategy == "agent" else rule.strategy
    return None


def conflict_risk(run: ParallelRun, tasks: Mapping[str, AgentTaskStatus | None]) -> tuple[list[ConflictRisk], bool]:
    """(the run's conflictRisk, truncated) from its tasks' statuses, by the rules above."""
    nodes = nodes_of(run.spec.tasks)
    names = {n.name for n in nodes}
    succeeded = {name: s for name, s in tasks.items()
                 if s is not None and s.phase == "Succeeded" and s.commit and name in names}
    truncated = False
    pairs: dict[tuple[str, str], dict[str, RiskFile]] = {}
    for name in sorted(succeeded):
        state = succeeded[name]
        truncated = truncated or state.conflict_risk_truncated
        for seen in state.conflict_risk:
            other = succeeded.get(seen.task)
            if other is None or seen.task == name or other.commit != seen.commit:
                continue
            if seen.task in upstream(nodes, name) or name in upstream(nodes, seen.task):
                continue
            files = [f for f in seen.files if resolve_strategy(run.spec.merge.resolve, f.path, f.kind) is None]
            if not files:
                continue
            key = (min(name, seen.task), max(name, seen.task))
            kept = pairs.setdefault(key, {})
            for f in files:
                kept.setdefault(f.path, f)
    out = []
    for key in sorted(pairs):
        files = list(pairs[key].values())
        if len(files) > MAX_RISK_FILES:
            files, truncated = files[:MAX_RISK_FILES], True
        out.append(ConflictRisk(tasks=list(key), files=files))
    if len(out) > MAX_RISK_PAIRS:
        out, truncated = out[:MAX_RISK_PAIRS], True
    return out, truncated


def risk_events(before: Sequence[ConflictRisk], now: Sequence[ConflictRisk]) -> list[Event]:
    """A Warning ConflictRisk for each pair that was not in the status before."""
    known = {tuple(r.tasks) for r in before}
    events = []
    for risk in now:
        if tuple(risk.tasks) in known:
            continue
        a, b = risk.tasks
        files = ", ".join(f"{f.path} ({f.kind})" for f in risk.files) or "unknown files"
        events.append(Event("Warning", "ConflictRisk",
                            f"tasks {a} and {b} would conflict when merged, in {files}; found before the merge"))
    return events
