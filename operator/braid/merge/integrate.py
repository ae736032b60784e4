"""Integrate task branches into the integration branch, without a work tree, and report every conflict."""

from __future__ import annotations

import logging
from collections.abc import Callable

from braid.api import Conflict, ConflictFile, MergeRequest, MergeStatus
from braid.gitops import GitError, MissingRef, ObjectCache, Repo, RepositoryUnreachable, normalize_url, resolve_base
from braid.plan import Node, topological_order

from .conflicts import parse_merge_tree
from .verify import Verifier, Verify, VerifyInterrupted

log = logging.getLogger("braid.merge")

# written into every merge commit for the reader; never read back to decide anything
RUN_TRAILER = "Braid-Run"


def merge_order(request: MergeRequest) -> list[str]:
    """Topological over the succeeded tasks; ties by name."""
    names = {t.name for t in request.tasks}
    nodes = [Node(t.name, tuple(d for d in t.depends_on if d in names)) for t in request.tasks]
    return topological_order(nodes)


def _files_changed(repo: Repo, base: str, tip: str) -> set[str]:
    out = repo.out("diff", "--name-only", "--no-renames", base, tip)
    return set(out.splitlines())


def integrate(repo: Repo, request: MergeRequest, base: str, steps: list[tuple[str, str]] | None = None) -> MergeStatus:
    """Merge each task's branch onto `base` in order, in `repo` (bare is fine). Nothing is pushed.

    `steps`, when given, receives (task, integration commit after it) for each merged task, in order.
    """
    status = MergeStatus(phase="Running", branch=request.integration_branch, not_merged=list(request.not_merged))
    by_name = {t.name: t for t in request.tasks}
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
        code, out, err = repo.run("merge-tree", "--write-tree", "-z", current, tip, check=False)
        if code not in (0, 1):
            raise GitError(["merge-tree"], code, err)
        tree, files = parse_merge_tree(out)
        changed[name] = _files_changed(repo, base, tip)
        if code == 0:
            message = f"braid: merge task {name}\n\nBranch {task.branch}.\n\n{RUN_TRAILER}: {request.run}\n"
            current = repo.out("commit-tree", tree, "-p", current, "-p", tip, "-m", message)
            status.merged.append(name)
            if steps is not None:
                steps.append((name, current))
            continue
        conflict = Conflict(task=name)
        for f in files:
            others = sorted(m for m in status.merged if f.path in changed.get(m, set()))
            conflict.files.append(ConflictFile(path=f.path, kind=f.kind, collides_with=others, message=f.message))
        conflict.collides_with = sorted({o for f in conflict.files for o in f.collides_with})
        status.conflicts.append(conflict)
        status.not_merged.append(name)
        held_back.add(name)
        log.warning("task %s conflicts in %s", name, ", ".join(f.path for f in conflict.files))
        if request.on_conflict == "stop":
            stopped = True
    status.commit = current
    status.conflict_count = sum(len(c.files) for c in status.conflicts)
    status.phase = "Conflicted" if status.conflicts else "Succeeded"
    return status


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


def run_merge(request: MergeRequest, cache: ObjectCache, env: dict[str, str] | None = None,
              verifier: Verifier | None = None, redact: Callable[[str], str] | None = None) -> MergeStatus:
    """The whole merge step: fetch, integrate, verify (spec.merge.verify, with `verifier`), push.
    Failures come back as phase Failed with a message. `redact` clears secrets from verify output."""
    url = normalize_url(request.repo.url)
    try:
        repo = cache.update(url, env)
        base = resolve_base(repo, request.repo.base_ref, branches="refs/heads/")
        steps: list[tuple[str, str]] = []
        status = integrate(repo, request, base, steps)
        if request.verify is not None and status.merged:
            if verifier is None:
                raise VerifierMissing()

            def rebuild(smaller: MergeRequest) -> tuple[MergeStatus, list[tuple[str, str]]]:
                again: list[tuple[str, str]] = []
                return integrate(repo, smaller, base, again), again

            status = Verify(repo, request, base, verifier, redact).run(status, steps, rebuild)
            if status.phase == "Failed":
                status.last_pushed = request.last_pushed
                return status
        publish(repo, request, status)
        return status
    except (GitError, IntegrationBranchTaken, MissingRef, RepositoryUnreachable, VerifierMissing, VerifyInterrupted,
            OSError) as exc:
        log.error("merge failed: %s", exc)
        return MergeStatus(phase="Failed", branch=request.integration_branch, message=str(exc)[:1000],
                           not_merged=[t.name for t in request.tasks] + list(request.not_merged),
                           last_pushed=request.last_pushed)

