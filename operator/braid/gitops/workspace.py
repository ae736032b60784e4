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


def _git_config(url: str) -> str:
    """The whole of a working copy's .git/config: what braid needs and nothing else."""
    quoted = url.replace("\\", "\\\\").replace('"', '\\"')
    return (
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
        "\tlogallrefupdates = false\n"
        "[gc]\n\tauto = 0\n"
        f'[remote "origin"]\n\turl = "{quoted}"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
    )


def open_workspace(workdir: Path, cache: Repo, url: str, env: Mapping[str, str] | None = None) -> Repo:
    """A fresh working copy at `workdir` sharing `cache`'s objects, with origin pointing at `url`.

    Nothing is copied: objects come through git's alternates mechanism, and the
    remote-tracking branches are read from the cache with a local fetch. What was at
    `workdir` before goes as `clear_workdir` says.
    """
    clear_workdir(workdir)
    workdir.mkdir(parents=True)
    repo = Repo(workdir, env)
    repo.run("init", "--quiet", "--template=")
    reset_git_dir(repo, cache, url)
    repo.run("fetch", "--quiet", "--no-tags", str(cache.path), "+refs/heads/*:refs/remotes/origin/*",
             "+refs/tags/*:refs/tags/*")
    return repo


def reset_git_dir(repo: Repo, cache: Repo, url: str) -> list[str]:
    """Put back braid's own config, alternates and info files; remove hooks. What differed is returned.

    An agent can write anything under .git. Before braid's git commits and pushes its
    work, the files git reads settings or programs from are braid's again, so nothing
    planted there (hooks, fsmonitor, filters, aliases, includes, attributes) takes effect.
    """
    git_dir = repo.path / ".git"
    wanted = {
        "config": _git_config(url),
        "objects/info/alternates": str(cache.path / "objects") + "\n",
        "info/attributes": None,
        "info/exclude": None,
        "config.worktree": None,
        "commondir": None,
        "info/grafts": None,
        "shallow": None,
    }
    changed = []
    for name, text in wanted.items():
        path = git_dir / name
        current = path.read_text(errors="replace") if path.is_file() and not path.is_symlink() else None
        if current == text:
            continue
        if path.exists() or path.is_symlink():
            changed.append(name)
            _remove(path)
        if text is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for directory in ("hooks", "info/sparse-checkout", "worktrees", "modules", "refs/replace"):
        path = git_dir / directory
        if path.exists() or path.is_symlink():
            changed.append(directory)
            _remove(path)
    return changed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


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


@dataclass
class Committed:
    made: bool
    """False when there was nothing to commit."""
    left_out: list[str] = field(default_factory=list)
    """Paths git refuses to record (any case of `.git`, an embedded repository without a commit):
    the rest of the work is committed without them."""


def commit_all(repo: Repo, message: str) -> Committed:
    """Stage everything the agent changed, apart from what git refuses, and commit it."""
    candidates = _z(repo.out_z("ls-files", "-z", "--others", "--modified", "--deleted", "--exclude-standard"))
    left_out: list[str] = []
    _stage(repo, sorted(set(candidates)), left_out)
    status, _, _ = repo.run("diff", "--cached", "--quiet", check=False)
    if status == 0:
        return Committed(False, left_out)
    repo.run("commit", "--quiet", "--no-verify", "-F", "-", stdin=message)
    return Committed(True, left_out)


def _z(text: str) -> list[str]:
    return [p for p in text.split("\0") if p]


def _stage(repo: Repo, paths: list[str], left_out: list[str]) -> None:
    """`git add` `paths` (literally); when git refuses the batch, split it until the refused paths are alone."""
    if not paths:
        return
    code, _, err = repo.run("add", "--all", "--pathspec-from-file=-", "--pathspec-file-nul", check=False,
                            stdin="\0".join(paths), env={"GIT_LITERAL_PATHSPECS": "1"})
    if code == 0:
        return
    if len(paths) == 1:
        log.warning("left out of the commit: %r: %s", paths[0], err.strip().splitlines()[-1:] or "")
        left_out.append(paths[0])
        return
    half = len(paths) // 2
    _stage(repo, paths[:half], left_out)
    _stage(repo, paths[half:], left_out)


def changed_files(repo: Repo, since: str) -> list[str]:
    out = repo.out("diff", "--name-only", "--no-renames", since, "HEAD")
    return [line for line in out.splitlines() if line]


def push_branch(repo: Repo, branch: str, lease: str, env: Mapping[str, str] | None = None) -> str:
    """Push HEAD to `branch`, only if the remote still holds `lease` ('' = must not exist). Return the commit.

    `env` (the git credentials) is given to this one call: nothing else braid runs in a
    working copy has it.
    """
    head = repo.out("rev-parse", "HEAD")
    push_ref(repo, f"refs/heads/{branch}", head, lease, env, shown=branch)
    return head


def push_ref(repo: Repo, ref: str, commit: str, lease: str, env: Mapping[str, str] | None = None,
             shown: str | None = None) -> None:
    """Push `commit` to the full ref `ref`, only if the remote still holds `lease` ('' = must not exist).

    Raises BranchMoved (naming `shown`, or the ref) when the remote holds something else.
    """
    code, out, err = repo.run("push", "--porcelain", "--no-verify", f"--force-with-lease={ref}:{lease}",
                              "origin", f"{commit}:{ref}", check=False, env=env)
    if code != 0:
        # with --porcelain the per-ref verdict ("[rejected] (stale info)") goes to stdout
        said = out + err
        if "stale info" in said or "[rejected]" in said or "fetch first" in said:
            raise BranchMoved(shown or ref, said)
        raise GitError(["push"], code, said)


class BranchMoved(RuntimeError):
    def __init__(self, branch: str, detail: str):
        super().__init__(f"branch {branch} changed on the remote while the task ran; not overwriting it")
        self.detail = detail
