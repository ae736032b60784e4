"""Integrate task branches into the integration branch, without a work tree, and report every conflict."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from braid.api import (
    MAX_RISK_FILES,
    MAX_RISK_PAIRS,
    Conflict,
    ConflictFile,
    ConflictRisk,
    MergeRequest,
    MergeStatus,
    Resolution,
    RiskFile,
    resolution_branch,
    resolver_name,
)
from braid.delivery import deliver
from braid.gitops import GitError, MissingRef, ObjectCache, Repo, RepositoryUnreachable, normalize_url, resolve_base
from braid.gitops.mergetree import MergeTree, Stage, merge_tree
from braid.plan import Node, topological_order, upstream
from braid.plan.resolve import MAX_ROUNDS, agent_rule, handed_out
from braid.plan.risk import resolve_strategy

from .verify import Verifier, Verify, VerifyInterrupted

log = logging.getLogger("braid.merge")

# written into every merge commit for the reader; never read back to decide anything
RUN_TRAILER = "Braid-Run"


def merge_order(request: MergeRequest) -> list[str]:
    """Topological over the succeeded tasks; ties by name."""
    names = {t.name for t in request.tasks}
    nodes = [Node(t.name, tuple(d for d in t.depends_on if d in names)) for t in request.tasks]
    return topological_order(nodes)


# a line git writes around each side of a content conflict
_MARKER = re.compile(rb"^(<{7}|>{7})( |\r?$)|^={7}\r?$", re.MULTILINE)


def commit_tree(repo: Repo, tree: str, parents: list[str], message: str) -> str:
    """A commit of `tree`, dated at its newest parent: the same inputs make the same commit, so a merge made
    again (a later round, a re-run) rebuilds the commits it made before, and a resolution prepared on
    one of them still applies."""
    newest = max(int(t) for t in repo.out("show", "-s", "--format=%ct", *parents).split())
    when = f"{newest} +0000"
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return repo.run(*args, "-m", message, env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})[1].strip()


def _files_changed(repo: Repo, base: str, tip: str) -> set[str]:
    out = repo.out("diff", "--name-only", "--no-renames", base, tip)
    return set(out.splitlines())


def integrate(repo: Repo, request: MergeRequest, base: str, steps: list[tuple[str, str]] | None = None,
              prepare: bool = True) -> MergeStatus:
    """Merge each task's branch onto `base` in order, in `repo` (bare is fine). Nothing is pushed.

    `steps`, when given, receives (task, integration commit after it) for each merged task, in order.
    A conflict an agent rule takes is prepared for a resolver (`prepare`, in the first rounds) and
    reported in status.resolutions; a conflict a resolver took in an earlier round is merged with its result.
    """
    status = MergeStatus(phase="Running", branch=request.integration_branch, not_merged=list(request.not_merged),
                         round=request.round)
    by_name = {t.name: t for t in request.tasks}
    resolutions = {r.task: r for r in request.resolutions}
    status.resolutions = [r.model_copy() for r in request.resolutions]
    current = base
    changed: dict[str, set[str]] = {}
    held_back: set[str] = set()
    stopped = False
    for name in merge_order(request):
        task = by_name[name]
        if stopped:
            status.not_merged.append(name)
            continue
        blocked = [d for d in task.depends_on if d in held_back]
        if blocked:
            # its branch carries the held-back task's work: merging it would smuggle that in
            held_back.add(name)
            status.not_merged.append(name)
            log.info("not merging %s: it builds on %s, which was not merged", name, blocked[0])
            continue
        tip = repo.rev(f"refs/heads/{task.branch}")
        if tip is None:
            held_back.add(name)
            status.not_merged.append(name)
            log.warning("not merging %s: branch %s does not exist", name, task.branch)
            continue
        if repo.run("merge-base", current, tip, check=False)[0] == 1:
            # git would refuse ("unrelated histories"): this task is not merged, the others are
            status.conflicts.append(Conflict(task=name, reason="UnrelatedHistory", message=(
                f"branch {task.branch} (at {tip[:12]}) has no history in common with the base "
                f"{request.repo.base_ref}: it was started from an unrelated commit or rewritten; not merged")))
            status.not_merged.append(name)
            held_back.add(name)
            log.warning("task %s: branch %s has no history in common with the base", name, task.branch)
            if request.on_conflict == "stop":
                stopped = True
            continue
        merged = merge_tree(repo, current, tip)
        changed[name] = _files_changed(repo, base, tip)
        tree = merged.tree if merged.clean else _resolved_tree(repo, request, merged)
        by_agent: str | None = None
        resolution = resolutions.get(name)
        handed: Resolution | None = None
        if tree is None and resolution is not None:
            tree, by_agent = _agent_resolution(repo, current, merged, resolution)
        elif tree is None and prepare and request.round < MAX_ROUNDS and \
                (rule := agent_rule(request.resolve, ((f.path, f.kind) for f in merged.conflicts))) is not None:
            handed = Resolution(
                task=name, resolver=resolver_name(name), branch=resolution_branch(request.run, name),
                prepared=_prepare(repo, request, merged, current, tip, name), rule=rule, round=request.round,
                files=[f.path for f in merged.conflicts if resolve_strategy(request.resolve, f.path, f.kind) is None])
            tree, by_agent, resolution = _earlier_resolution(repo, request, current, merged, handed)
            if tree is not None:
                handed = None
                status.resolutions.append(resolution)
        conflict = Conflict(task=name)
        for f in merged.conflicts:
            others = sorted(m for m in status.merged if f.path in changed.get(m, set()))
            strategy = resolve_strategy(request.resolve, f.path, f.kind)
            how = None
            if tree is not None:
                how = f"rule {strategy}" if strategy else by_agent
            conflict.files.append(ConflictFile(path=f.path, kind=f.kind, collides_with=others, message=f.message,
                                               resolution=how))
        conflict.collides_with = sorted({o for f in conflict.files for o in f.collides_with})
        if tree is None and by_agent is not None:
            conflict.message = by_agent
        if tree is not None:
            message = f"braid: merge task {name}\n\nBranch {task.branch}.\n"
            if by_agent is not None and resolution is not None:
                message += (f"\nConflicts resolved by {resolution.resolver} on {resolution.branch} "
                            f"(commit {resolution.commit}).\n")
            message += f"\n{RUN_TRAILER}: {request.run}\n"
            current = commit_tree(repo, tree, [current, tip], message)
            status.merged.append(name)
            if steps is not None:
                steps.append((name, current))
            if conflict.files:
                status.resolved.append(conflict)
                log.info("task %s: conflicts in %s resolved by spec.merge.resolve rules", name,
                         ", ".join(f.path for f in conflict.files))
            continue
        if handed is not None:
            handed.collides_with = conflict.collides_with
            status.resolutions.append(handed)
            conflict.message = f"handed to the resolver {handed.resolver}"
        status.conflicts.append(conflict)
        status.not_merged.append(name)
        held_back.add(name)
        log.warning("task %s conflicts in %s", name, ", ".join(f.path for f in conflict.files))
        if request.on_conflict == "stop":
            stopped = True
    status.left_out_conflicts = _left_out_pairs(repo, request, status)
    status.commit = current
    status.conflict_count = sum(len(c.files) for c in status.conflicts)
    status.phase = "Resolving" if handed_out(status) else "Conflicted" if status.conflicts else "Succeeded"
    return status


def _earlier_resolution(repo: Repo, request: MergeRequest, current: str, merged: MergeTree,
                        handed: Resolution) -> tuple[str | None, str | None, Resolution | None]:
    """A resolution an earlier run's resolver made of this very conflict: braid's record of the resolution
    branch builds on the commit prepared now (the same inputs prepare the same commit). Reused, it costs
    no second agent run. (tree, how, resolution), or Nones."""
    record = request.resolution_records.get(handed.task)
    if not record or repo.rev(record) is None or record == handed.prepared or \
            repo.run("merge-base", "--is-ancestor", handed.prepared, record, check=False)[0] != 0:
        return None, None, None
    earlier = handed.model_copy(update={"commit": record})
    tree, how = _agent_resolution(repo, current, merged, earlier)
    if tree is None:
        return None, None, None
    return tree, f"{how} (an earlier run's)", earlier


def _prepare(repo: Repo, request: MergeRequest, merged: MergeTree, current: str, tip: str, name: str) -> str:
    """The commit a resolver starts from: the integration so far merged with the task's branch, the files a
    rule resolves resolved, the others as git left them (conflict markers in content conflicts)."""
    tree = _resolved_tree(repo, request, merged, partial=True) or merged.tree
    files = "\n".join(f"- {f.path} ({f.kind})" for f in merged.conflicts)
    message = (f"braid: conflicts of task {name}, for its resolver\n\nThe integration so far merged with the task's "
               f"branch; these files are committed as git left them, with conflict markers:\n{files}\n\n"
               f"{RUN_TRAILER}: {request.run}\n")
    return commit_tree(repo, tree, [current, tip], message)


def _agent_resolution(repo: Repo, current: str, merged: MergeTree, resolution: Resolution) -> tuple[str | None, str]:
    """(the resolved tree, how it was resolved), or (None, why the resolver's result cannot be merged)."""
    who = resolution.resolver
    if resolution.commit is None:
        return None, f"{who} did not resolve it" + (f": {resolution.message}" if resolution.message else "")
    commit = repo.rev(resolution.commit)
    parent = repo.rev(f"{resolution.prepared}^1")
    if commit is None or parent is None:
        return None, f"{who}: its result {resolution.commit[:12]} is not on {resolution.branch}"
    if parent != current and repo.out("rev-parse", f"{parent}^{{tree}}") != repo.out("rev-parse", f"{current}^{{tree}}"):
        return None, f"{who}: the integration it resolved against has changed since; not merged"
    if repo.run("merge-base", "--is-ancestor", resolution.prepared, commit, check=False)[0] != 0:
        return None, f"{who}: its result does not build on the commit braid prepared"
    for f in merged.conflicts:
        if repo.run("cat-file", "-e", f"{commit}:{f.path}", check=False)[0] != 0:
            continue  # removed: a modify/delete settled by deleting
        if _MARKER.search(repo.run_bytes("cat-file", "blob", f"{commit}:{f.path}")[1]):
            return None, f"{who} left conflict markers in {f.path}; not merged"
    return repo.out("rev-parse", f"{commit}^{{tree}}"), f"agent {who} at {commit[:12]}"


RESOLVE_FLAGS = {"union": "--union", "ours": "--ours", "theirs": "--theirs"}


def _resolved_tree(repo: Repo, request: MergeRequest, merged: MergeTree, partial: bool = False) -> str | None:
    """The merged tree with every conflict resolved by a spec.merge.resolve rule, or None when some conflict
    has no rule (or cannot be resolved from its blobs). `partial`: resolve what a rule resolves and leave
    the rest as git merge-tree wrote it (None when no rule applies).

    Each file is merged again from git's own three blobs (base, the integration side, the
    task's side; no base for add/add) with `git merge-file --union|--ours|--theirs`, and put
    into git merge-tree's tree in a scratch index. No merge driver or attribute of the
    repository is consulted.
    """
    if not request.resolve or not merged.conflicts:
        return None
    plans: list[tuple[str, str]] = []
    for f in merged.conflicts:
        strategy = resolve_strategy(request.resolve, f.path, f.kind)
        stages = merged.stages.get(f.path, {})
        if strategy is None or 2 not in stages or 3 not in stages or \
                not all(s.mode.startswith("100") for s in stages.values()):
            if partial:
                continue
            return None
        plans.append((f.path, strategy))
    if partial and not plans:
        return None
    if not partial and set(merged.stages) - {path for path, _ in plans}:
        return None  # git left another path unmerged that no conflict here names: not braid's to settle
    with tempfile.TemporaryDirectory(prefix="braid-resolve-") as scratch:
        root = Path(scratch)
        index = {"GIT_INDEX_FILE": str(root / "index")}
        repo.run("read-tree", merged.tree, env=index)
        for path, strategy in plans:
            stages = merged.stages[path]
            files = [_blob_file(repo, stages.get(n), root / f"{n}") for n in (2, 1, 3)]
            code, _, err = repo.run("merge-file", "-q", RESOLVE_FLAGS[strategy], "--", *map(str, files), check=False)
            if code < 0 or code > 127:
                log.warning("git merge-file could not resolve %s: %s", path, err.strip()[-300:])
                return None
            blob = repo.out("hash-object", "-w", "--no-filters", "--", str(files[0]))
            repo.run("update-index", "--add", "--cacheinfo", f"{stages[2].mode},{blob},{path}", env=index)
        return repo.run("write-tree", env=index)[1].strip()


def _blob_file(repo: Repo, stage: Stage | None, path: Path) -> Path:
    """The blob of `stage` in a file (an empty file when the stage is absent: add/add has no base)."""
    path.write_bytes(repo.run_bytes("cat-file", "blob", stage.oid)[1] if stage is not None else b"")
    return path


def _left_out_pairs(repo: Repo, request: MergeRequest, status: MergeStatus) -> list[ConflictRisk]:
    """Pairs of tasks left out for conflicting (or stopped before their turn) whose branches conflict with each
    other too: a reviewer integrating them by hand meets these as well. At most MAX_RISK_PAIRS pairs."""
    nodes = [Node(t.name, tuple(t.depends_on)) for t in request.tasks]
    whole = {c.task for c in status.conflicts if c.reason is not None}
    left = [t for t in request.tasks if t.name in status.not_merged and t.name not in whole]
    tips = {t.name: tip for t in left if (tip := repo.rev(f"refs/heads/{t.branch}")) is not None}
    names = sorted(tips)
    pairs: list[ConflictRisk] = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if len(pairs) >= MAX_RISK_PAIRS:
                return pairs
            if a in upstream(nodes, b) or b in upstream(nodes, a):
                continue
            if repo.run("merge-base", tips[a], tips[b], check=False)[0] != 0:
                continue
            merged = merge_tree(repo, tips[a], tips[b])
            files = [RiskFile(path=f.path, kind=f.kind) for f in merged.conflicts
                     if resolve_strategy(request.resolve, f.path, f.kind) is None]
            if files:
                pairs.append(ConflictRisk(tasks=[a, b], files=files[:MAX_RISK_FILES]))
    return pairs


class VerifierMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__("spec.merge.verify is set but this merge has no way to run it")


class IntegrationBranchTaken(RuntimeError):
    def __init__(self, branch: str, tip: str):
        super().__init__(f"spec.integrationBranch: {branch} already exists and holds commits braid did not write "
                         f"(tip {tip[:12]}); delete it or choose another name")


def publish(repo: Repo, request: MergeRequest, status: MergeStatus) -> None:
    """Push the merged commit to the integration branch; keep an identical existing result as it is.

    braid replaces only what it wrote: the branch moves other than by a fast-forward only
    while its tip is the commit braid itself last pushed there (request.last_pushed, a record
    braid keeps, not anything a commit could say of itself), and the push is leased on that
    tip. Any other tip is refused and nothing is pushed.
    """
    branch = request.integration_branch
    status.last_pushed = request.last_pushed
    existing = repo.rev(f"refs/heads/{branch}")
    if existing:
        if repo.out("rev-parse", f"{existing}^{{tree}}") == repo.out("rev-parse", f"{status.commit}^{{tree}}"):
            if status.verification is not None and status.verification.commit == status.commit:
                status.verification.commit = existing  # the same tree it verified
            status.commit = existing
            return
        ours = existing == request.last_pushed
        fast_forward = repo.run("merge-base", "--is-ancestor", existing, status.commit, check=False)[0] == 0
        if not ours and not fast_forward:
            raise IntegrationBranchTaken(branch, existing)
    repo.run("push", "--quiet", "--porcelain", f"--force-with-lease=refs/heads/{branch}:{existing or ''}",
             normalize_url(request.repo.url), f"{status.commit}:refs/heads/{branch}")
    repo.run("update-ref", f"refs/heads/{branch}", status.commit)
    status.last_pushed = status.commit


def push_resolutions(repo: Repo, request: MergeRequest, status: MergeStatus) -> None:
    """Push each prepared resolution to its branch. A branch that exists is replaced only while it holds what
    braid pushed there (the prepared commit itself, or the earlier run's record); otherwise that conflict is
    not handed to an agent and stays as it is."""
    url = normalize_url(request.repo.url)
    kept = [r for r in status.resolutions if r not in handed_out(status)]
    for pending in handed_out(status):
        ref = f"refs/heads/{pending.branch}"
        existing = repo.rev(ref)
        if existing == pending.prepared:
            kept.append(pending)
            continue
        if existing is not None and existing != request.resolution_records.get(pending.task):
            for conflict in status.conflicts:
                if conflict.task == pending.task:
                    conflict.message = (f"not handed to an agent: {pending.branch} exists and holds commits braid did "
                                        f"not write (tip {existing[:12]})")
            log.warning("task %s: resolution branch %s exists and is not braid's", pending.task, pending.branch)
            continue
        repo.run("push", "--quiet", "--porcelain", f"--force-with-lease={ref}:{existing or ''}", url,
                 f"{pending.prepared}:{ref}")
        repo.run("update-ref", ref, pending.prepared)
        kept.append(pending)
    status.resolutions = kept
    if not handed_out(status):
        status.phase = "Conflicted" if status.conflicts else "Succeeded"


def run_merge(request: MergeRequest, cache: ObjectCache, env: dict[str, str] | None = None,
              verifier: Verifier | None = None, redact: Callable[[str], str] | None = None,
              pr_token: str | None = None) -> MergeStatus:
    """The whole merge step: fetch, integrate, verify (spec.merge.verify, with `verifier`), push, and then
    open or update spec.delivery's pull request with `pr_token` (its failure is reported, the push stays).
    Failures come back as phase Failed with a message. `redact` clears secrets from verify output."""
    url = normalize_url(request.repo.url)
    try:
        repo = cache.update(url, env)
        base = resolve_base(repo, request.repo.base_ref, branches="refs/heads/")
        steps: list[tuple[str, str]] = []
        status = integrate(repo, request, base, steps)
        if handed_out(status):
            push_resolutions(repo, request, status)
        if handed_out(status):
            # the resolvers run first; this round's result is neither verified nor pushed
            status.last_pushed = request.last_pushed
            return status
        if request.verify is not None and status.merged:
            if verifier is None:
                raise VerifierMissing()

            def rebuild(smaller: MergeRequest) -> tuple[MergeStatus, list[tuple[str, str]]]:
                again: list[tuple[str, str]] = []
                return integrate(repo, smaller, base, again, prepare=False), again

            status = Verify(repo, request, base, verifier, redact).run(status, steps, rebuild)
            if status.phase == "Failed":
                status.last_pushed = request.last_pushed
                return status
        publish(repo, request, status)
        if request.pull_request is not None:
            status.pull_request = deliver(request, status, pr_token, redact)
        return status
    except (GitError, IntegrationBranchTaken, MissingRef, RepositoryUnreachable, VerifierMissing, VerifyInterrupted,
            OSError) as exc:
        log.error("merge failed: %s", exc)
        return MergeStatus(phase="Failed", branch=request.integration_branch, message=str(exc)[:1000],
                           not_merged=[t.name for t in request.tasks] + list(request.not_merged),
                           last_pushed=request.last_pushed)

