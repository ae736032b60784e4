"""A task's working copy: objects borrowed from the cache, the branch prepared, work committed and pushed."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .git import GitError, Repo

log = logging.getLogger(__name__)


class DependencyConflict(RuntimeError):
    def __init__(self, dependency: str, files: list[str]):
        self.dependency = dependency
        self.files = files
        super().__init__(f"merging dependency branch {dependency} conflicts in {', '.join(files) or 'unknown files'}")


class MissingRef(RuntimeError):
    pass


class BranchExists(RuntimeError):
    """The task branch holds a commit braid has no record of pushing: it is not taken for braid's work."""

    def __init__(self, branch: str, tip: str, last_pushed: str | None):
        if last_pushed:
            what = f"is at {tip[:12]}, not at {last_pushed[:12]} where braid last pushed it"
        else:
            what = f"already exists (at {tip[:12]}) and braid did not push it"
        super().__init__(f"branch {branch} {what}; braid does not take over work it did not write: "
                         "delete the branch, or rename the task or the run")


@dataclass
class Prepared:
    start: str
    """Commit the agent starts from (base + dependencies, or the resumed branch tip)."""
    lease: str
    """What the remote branch held when we fetched ('' when it did not exist): the push lease."""
    resumed: bool = False
    merged_dependencies: list[str] = field(default_factory=list)


def _pushed_marker(workdir: Path) -> Path:
    return workdir.parent / f".{workdir.name}.pushed"


def mark_pushed(workdir: Path) -> None:
    """Nothing in `workdir` needs keeping: its work is pushed (or no agent ever ran in it)."""
    _pushed_marker(workdir).touch()


def clear_workdir(workdir: Path) -> Path | None:
    """Make room for a fresh working copy at `workdir`, never losing work that was not pushed.

    A working copy whose work was pushed is deleted; any other (its attempt was killed
    before it pushed) is moved aside to `<name>.unpushed-<time>`, which is returned.
    """
    marker = _pushed_marker(workdir)
    kept = None
    if workdir.exists():
        if marker.exists():
            shutil.rmtree(workdir)
        else:
            kept = workdir.with_name(f"{workdir.name}.unpushed-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
            n = 1
            while kept.exists():
                kept, n = kept.with_name(f"{kept.name.split('~')[0]}~{n}"), n + 1
            workdir.rename(kept)
            log.warning("%s holds work that was not pushed: kept as %s", workdir, kept)
    marker.unlink(missing_ok=True)
    return kept


def open_workspace(workdir: Path, cache: Repo, url: str, env: Mapping[str, str] | None = None) -> Repo:
    """A fresh working copy at `workdir` sharing `cache`'s objects, with origin pointing at `url`.

    Nothing is copied: objects come through git's alternates mechanism, and the
    remote-tracking branches are read from the cache with a local fetch. What was at
    `workdir` before goes as `clear_workdir` says.
    """
    clear_workdir(workdir)
    workdir.mkdir(parents=True)
    repo = Repo(workdir, env)
    repo.run("init", "--quiet")
    (workdir / ".git" / "objects" / "info" / "alternates").write_text(str(cache.path / "objects") + "\n")
    repo.run("config", "gc.auto", "0")
    repo.run("remote", "add", "origin", url)
    repo.run("fetch", "--quiet", "--no-tags", str(cache.path), "+refs/heads/*:refs/remotes/origin/*",
             "+refs/tags/*:refs/tags/*")
    return repo


def resolve_base(repo: Repo, base_ref: str, branches: str = "refs/remotes/origin/") -> str:
    """The commit of `base_ref` as a branch (under `branches`), a tag, or a commit id."""
    for candidate in (f"{branches}{base_ref}", f"refs/tags/{base_ref}", base_ref):
        commit = repo.rev(candidate)
        if commit:
            return commit
    raise MissingRef(f"repo.baseRef: {base_ref!r} is not a branch, tag or commit of the repository")


def prepare_branch(repo: Repo, branch: str, base_ref: str, dependency_branches: Sequence[str],
                   last_pushed: str | None = None) -> Prepared:
    """Check out `branch`: resume it if braid pushed it, else start it from the base; merge dependencies.

    `last_pushed` is braid's record of the commit it last pushed to `branch`. The branch is
    resumed only while it holds exactly that commit; a branch that exists without a record,
    or moved away from it, raises BranchExists and is left as it is.
    """
    remote_tip = repo.rev(f"refs/remotes/origin/{branch}")
    if remote_tip and remote_tip != last_pushed:
        raise BranchExists(branch, remote_tip, last_pushed)
    if remote_tip:
        repo.run("checkout", "--quiet", "-B", branch, remote_tip)
    else:
        repo.run("checkout", "--quiet", "-B", branch, resolve_base(repo, base_ref))
    merged = []
    for dep in dependency_branches:
        dep_tip = repo.rev(f"refs/remotes/origin/{dep}")
        if not dep_tip:
            raise MissingRef(f"dependency branch {dep} does not exist on the remote")
        status, _, _ = repo.run("merge-base", "--is-ancestor", dep_tip, "HEAD", check=False)
        if status == 0:
            continue
        status, _, _ = repo.run(
            "merge", "--quiet", "--no-ff", "--no-edit", "-m", f"braid: merge dependency {dep}", dep_tip, check=False
        )
        if status != 0:
            files = repo.out("diff", "--name-only", "--diff-filter=U").splitlines()
            repo.run("merge", "--abort", check=False)
            raise DependencyConflict(dep, files)
        merged.append(dep)
    return Prepared(start=repo.out("rev-parse", "HEAD"), lease=remote_tip or "", resumed=bool(remote_tip),
                    merged_dependencies=merged)


def commit_all(repo: Repo, message: str) -> bool:
    """Stage everything the agent changed and commit it; False when there was nothing to commit."""
    repo.run("add", "--all")
    status, _, _ = repo.run("diff", "--cached", "--quiet", check=False)
    if status == 0:
        return False
    repo.run("commit", "--quiet", "--no-verify", "-F", "-", stdin=message)
    return True


def changed_files(repo: Repo, since: str) -> list[str]:
    out = repo.out("diff", "--name-only", "--no-renames", since, "HEAD")
    return [line for line in out.splitlines() if line]


def push_branch(repo: Repo, branch: str, lease: str) -> str:
    """Push HEAD to `branch`, only if the remote still holds `lease` ('' = must not exist). Return the commit."""
    head = repo.out("rev-parse", "HEAD")
    code, out, err = repo.run("push", "--porcelain", f"--force-with-lease=refs/heads/{branch}:{lease}", "origin",
                              f"{head}:refs/heads/{branch}", check=False)
    if code != 0:
        # with --porcelain the per-ref verdict ("[rejected] (stale info)") goes to stdout
        said = out + err
        if "stale info" in said or "[rejected]" in said or "fetch first" in said:
            raise BranchMoved(branch, said)
        raise GitError(["push"], code, said)
    return head


class BranchMoved(RuntimeError):
    def __init__(self, branch: str, detail: str):
        super().__init__(f"branch {branch} changed on the remote while the task ran; not overwriting it")
        self.detail = detail
