"""The working copies local runs leave behind: which hold work that is not on the remote, and
removing those that do not.

A run's state directory (`<runs root>/<run>-<hash>/`, or `--state-dir`) holds:

    lock             held by the `braid run` (or `braid clean`) using the directory
    run.json         the run's name, repository and object cache
    status.json      the run's status; tasks.json, fingerprints.json: what braid pushed
    tasks/<task>/    each attempt's spec, log and result
    agents/<task>    the live `braid agent-run` of each task (children.py)
    work/<task>      each task's working copy; `.<task>.pushed` once its work was pushed;
                     `<task>.unpushed-<time>` a copy set aside by a later attempt

A working copy may go only when no process works in it and everything it holds is on the
remote: no uncommitted change, no stash, and no commit on HEAD or a local branch that no
branch of the remote holds. The remote is fetched to know that; when it cannot be reached,
nothing is removed. Removal moves the copy into `work/.trash/` (one rename: the task has no
working copy from then on, so a later run makes a fresh one from the remote branch) and
deletes it there; what a crash leaves in `.trash` is deleted next time.

Records and logs stay: a later `braid run` of the same file needs them to know what braid
pushed. `purge` removes the whole state directory as well (braid forgets the run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from braid.api import task_branch
from braid.api.common import NAME_PATTERN, url_problem
from braid.gitops import GitError, ObjectCache, Repo, RepositoryUnreachable, reset_git_dir

from .children import running
from .lock import RunLocked, state_lock

RUN_RECORD = "run.json"
TRASH = ".trash"
_SET_ASIDE = re.compile(r"^(?P<task>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.unpushed-[0-9T]+(~[0-9]+)?$")
_TASK = re.compile(NAME_PATTERN)
_PURGING = re.compile(r"^\..+\.removing-[0-9]+$")
TERMINAL = ("Succeeded", "Conflicted", "Failed", "Cancelled", "Suspended")


def write_run_record(state_dir: Path, name: str, url: str, cache_root: Path) -> None:
    record = {"name": name, "repository": url, "cacheDir": str(cache_root)}
    tmp = state_dir / f"{RUN_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(state_dir / RUN_RECORD)


@dataclass
class WorkCopy:
    entry: str
    """Its name under work/."""
    task: str
    size: int
    pushed: bool = False
    """Nothing in it is missing from the remote: no uncommitted change, no commit the remote lacks."""
    reason: str = ""
    """Why it is kept, when not pushed."""
    removed: bool = False


@dataclass
class RunState:
    path: Path
    name: str
    repository: str = ""
    phase: str = ""
    holder: str | None = None
    """`braid run (pid N)` when a live process holds the directory: nothing in it was looked at."""
    size: int = 0
    copies: list[WorkCopy] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    """Removals a crash interrupted (in work/.trash): deleted when cleaning."""
    problem: str | None = None
    """Why its working copies could not be checked (the remote cannot be reached, ...)."""
    purged: bool = False

    @property
    def ended(self) -> str:
        if self.holder:
            return f"live: {self.holder} is using it"
        return "ended" if self.phase in TERMINAL or not self.phase else "interrupted"

    def kept(self) -> list[WorkCopy]:
        return [c for c in self.copies if not c.pushed]


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def disk_usage(path: Path) -> int:
    """Bytes `path` takes on disk, never following a symbolic link."""
    try:
        total = os.lstat(path).st_blocks * 512
    except OSError:
        return 0
    if path.is_symlink() or not path.is_dir():
        return total
    for directory, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _read_json(path: Path) -> dict:
    try:
        if path.is_symlink():
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def state_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """The state directories under a runs root, and what interrupted purges left there."""
    runs: list[Path] = []
    purging: list[Path] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return runs, purging
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir():
            continue  # not a directory braid made
        if _PURGING.match(entry.name):
            purging.append(entry)
        elif not entry.name.startswith(".") and any(
                (entry / f).exists() for f in (RUN_RECORD, "status.json", "tasks.json", "lock", "work")):
            runs.append(entry)
    return runs, purging


def purges_of(state_dir: Path) -> list[Path]:
    """What interrupted purges of `state_dir` left next to it."""
    pattern = re.compile(rf"^\.{re.escape(state_dir.name)}\.removing-[0-9]+$")
    try:
        return sorted(p for p in state_dir.parent.iterdir()
                      if pattern.match(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def describe(state_dir: Path) -> RunState:
    """What the files say about a run, without taking its lock or running git."""
    record = _read_json(state_dir / RUN_RECORD)
    name = record.get("name") if isinstance(record.get("name"), str) else None
    url = record.get("repository") if isinstance(record.get("repository"), str) else None
    if not (name and url):
        # a state directory from before run.json: each task's spec names the run and repository
        for spec_file in sorted((state_dir / "tasks").glob("*/spec.json")):
            spec = _read_json(spec_file)
            repo = spec.get("repo")
            name = name or (spec.get("run") if isinstance(spec.get("run"), str) else None)
            if not url and isinstance(repo, dict) and isinstance(repo.get("url"), str):
                url = repo["url"]
            if name and url:
                break
    phase = _read_json(state_dir / "status.json").get("phase")
    return RunState(path=state_dir, name=name or state_dir.name, repository=url or "",
                    phase=phase if isinstance(phase, str) else "", size=disk_usage(state_dir))


def _cache_root(state_dir: Path, default: Path) -> Path:
    """The object cache the run's working copies borrow objects from (recorded in run.json)."""
    recorded = _read_json(state_dir / RUN_RECORD).get("cacheDir")
    return Path(recorded) if isinstance(recorded, str) and os.path.isabs(recorded) else default


def _work_entries(work: Path) -> list[tuple[str, str]]:
    """(entry, task) of each working copy under work/, set-aside ones included."""
    out = []
    try:
        names = sorted(os.listdir(work))
    except OSError:
        return out
    for entry in names:
        if entry.startswith("."):
            continue  # .<task>.pushed markers, .trash
        match = _SET_ASIDE.match(entry)
        if match:
            out.append((entry, match["task"]))
        elif _TASK.match(entry):
            out.append((entry, entry))
        # anything else under work/ is not braid's: not listed, not touched
    return out


def inspect(state: RunState, cache_root: Path, auth: Mapping[str, str] | None) -> RunState:
    """Check every working copy of a run whose lock the caller holds."""
    work = state.path / "work"
    if work.is_symlink():
        state.problem = f"{work} is a symbolic link, not braid's: left alone"
        return state
    trash = work / TRASH
    if trash.is_dir() and not trash.is_symlink():
        state.leftovers = sorted(trash.iterdir())
    entries = _work_entries(work)
    if not entries:
        return state
    alive = running(state.path / "agents")
    cache: Repo | None = None
    heads: dict[str, str] = {}
    if not state.repository:
        state.problem = "the state directory does not say which repository the run used"
    elif problem := url_problem(state.repository):
        state.problem = f"the recorded repository URL is not one braid would use ({problem})"
    else:
        try:
            cache = ObjectCache(_cache_root(state.path, cache_root)).update(state.repository, auth)
            heads = _heads(cache)
        except (RepositoryUnreachable, GitError) as exc:
            state.problem = f"cannot reach the remote to check what it holds ({exc})"
    for entry, task in entries:
        path = work / entry
        copy = WorkCopy(entry=entry, task=task, size=disk_usage(path))
        copy.reason = _why_kept(path, entry, task, state, alive, cache, heads) or ""
        copy.pushed = not copy.reason
        state.copies.append(copy)
    return state


def _heads(cache: Repo) -> dict[str, str]:
    out = cache.out_z("for-each-ref", "--format=%(refname)%00%(objectname)", "refs/heads/")
    return dict(line.split("\0", 1) for line in out.splitlines() if "\0" in line)


def _why_kept(path: Path, entry: str, task: str, state: RunState, alive: Mapping[str, int],
              cache: Repo | None, heads: Mapping[str, str]) -> str | None:
    """Why the working copy at `path` must stay, or None when everything in it is on the remote."""
    if path.is_symlink() or not path.is_dir():
        return "not a directory braid made (a symbolic link or a file): left alone"
    if entry == task and task in alive:
        return f"its agent still runs (pid {alive[task]})"
    git_dir = path / ".git"
    if git_dir.is_symlink() or not git_dir.is_dir():
        return "has no .git directory of its own: left alone"
    if cache is None:
        return state.problem or "the remote was not checked"
    repo = Repo(path, {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(path)})
    branch = task_branch(state.name, task)
    try:
        # what an agent may have planted in .git (filters, fsmonitor, another work tree) is
        # braid's own again before git looks at the files, as before braid commits
        reset_git_dir(repo, cache, state.repository)
        changes = [p for p in repo.out_z("status", "--porcelain=v1", "-z", "--no-renames",
                                                 "--untracked-files=all").split("\0")
                   if len(p) > 3 and p[2] == " "]
        if changes:
            first = changes[0][3:]
            more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
            return f"{len(changes)} uncommitted change{'s' if len(changes) > 1 else ''} ({first!r}{more})"
        if repo.rev("refs/stash"):
            return "it holds a stash (git stash list)"
        _, count, _ = repo.run("rev-list", "--count", "HEAD", "--branches", "--stdin",
                               stdin="".join(f"^{sha}\n" for sha in heads.values()))
        unpushed = int(count.strip() or "0")
    except (GitError, ValueError) as exc:
        return f"git cannot inspect it ({exc})"
    if unpushed:
        tip = heads.get(f"refs/heads/{branch}")
        where = f"{branch} is at {tip[:10]}" if tip else f"the remote has no branch {branch}"
        return f"{unpushed} commit{'s' if unpushed > 1 else ''} on no branch of the remote ({where})"
    return None


def _rmtree(path: Path) -> None:
    """Delete the directory `path` and all in it; symbolic links are removed, never followed."""
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except PermissionError:
        pass
    # read-only directories (a Go module cache, say): writable again, then deleted
    for directory, _, _ in os.walk(path, followlinks=False):
        if not os.path.islink(directory):
            os.chmod(directory, stat.S_IRWXU)
    shutil.rmtree(path)


def remove_copies(state: RunState) -> None:
    """Remove the run's pushed working copies and interrupted removals. The caller holds the lock."""
    work = state.path / "work"
    if work.is_symlink():
        return
    trash = work / TRASH
    for leftover in state.leftovers:
        try:
            _rmtree(leftover)
        except OSError as exc:
            state.problem = state.problem or f"cannot delete {leftover} ({exc})"
    for copy in state.copies:
        if not copy.pushed:
            continue
        try:
            if trash.is_symlink():
                trash.unlink()  # not braid's; the link goes, what it points at stays
            trash.mkdir(exist_ok=True)
            target = trash / f"{copy.entry}-{time.time_ns()}"
            # one rename: from here on the task has no working copy; a crash leaves only .trash
            os.rename(work / copy.entry, target)
            (work / f".{copy.entry}.pushed").unlink(missing_ok=True)
            _rmtree(target)
        except OSError as exc:
            copy.pushed, copy.reason = False, f"removing it failed ({exc})"
            continue
        copy.removed = True
    if trash.is_dir() and not trash.is_symlink() and not any(trash.iterdir()):
        trash.rmdir()


def purge(state: RunState) -> None:
    """Remove the whole state directory: moved aside in one rename, then deleted."""
    away = state.path.with_name(f".{state.path.name}.removing-{time.time_ns()}")
    os.rename(state.path, away)
    _rmtree(away)
    state.purged = True


def clean(state_dir: Path, cache_root: Path, auth: Mapping[str, str] | None, *, remove: bool,
          forget: bool = False) -> RunState:
    """Look at one run (and with `remove`, remove its pushed working copies; with `forget`, the
    whole directory once no working copy is kept), holding its lock throughout."""
    state = describe(state_dir)
    try:
        with state_lock(state_dir, "braid clean"):
            inspect(state, cache_root, auth)
            if remove:
                remove_copies(state)
            if remove and forget and not state.kept() and not state.problem and not state_dir.is_symlink():
                try:
                    purge(state)
                except OSError as exc:
                    state.problem = f"removing the state directory failed ({exc})"
    except RunLocked as exc:
        state.holder = f"`{exc.holder}` (pid {exc.pid})"
    return state


def remove_run_leftovers(purging: list[Path]) -> None:
    for path in purging:
        _rmtree(path)
