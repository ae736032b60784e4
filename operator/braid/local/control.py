"""A local run seen from another process: find its state directory, read its status, follow a
task's log, ask it to stop.

Nothing here takes the run's lock: whether a `braid run` holds it is read from /proc/locks,
so looking never gets in the way of a run that is starting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from braid.api import AgentTaskStatus, ParallelRun, ParallelRunStatus
from braid.api.status import ENDED_TASK_PHASES

RUN_FILE = "parallelrun.json"
STATUS_FILE = "status.json"
TASKS_FILE = "tasks.json"
CANCEL_FILE = "cancel"
LOCK_FILE = "lock"
_ATTEMPT_LOG = re.compile(r"attempt-([0-9]{1,6})\.log")


class NoSuchRun(LookupError):
    """No state directory, or more than one, answers to the name given."""


def runs_root(cache_root: Path) -> Path:
    """Where `braid run` puts state directories by default: next to the object cache."""
    return cache_root.parent / "runs"


def state_dir_for(cache_root: Path, run: str, url: str) -> Path:
    """Where a run keeps its state by default: one directory per run name and repository."""
    key = hashlib.sha256(url.encode()).hexdigest()[:10]
    return runs_root(cache_root) / f"{run}-{key}"


def read_json(path: Path) -> dict | None:
    """A JSON object from a state file; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lock_holder(state_dir: Path) -> int | None:
    """The pid of the `braid run` holding `state_dir`'s lock, None when none does."""
    try:
        st = (state_dir / LOCK_FILE).stat()
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in locks.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:9977966 0 EOF"; a blocked waiter's line has "->"
        if len(fields) >= 6 and fields[1] == "FLOCK" and "->" not in fields and fields[5] == ident:
            return int(fields[4]) if fields[4].isdigit() else 0
    return None


@dataclass(frozen=True)
class RunDir:
    """One local run's state directory."""

    path: Path

    @property
    def run(self) -> ParallelRun | None:
        """The ParallelRun as the last `braid run` read it."""
        data = read_json(self.path / RUN_FILE)
        try:
            return ParallelRun.model_validate(data) if data is not None else None
        except ValidationError:
            return None

    @property
    def status(self) -> ParallelRunStatus | None:
        data = read_json(self.path / STATUS_FILE)
        try:
            return ParallelRunStatus.model_validate(data) if data is not None else None
        except ValidationError:
            return None

    def task(self, name: str) -> AgentTaskStatus | None:
        data = (read_json(self.path / TASKS_FILE) or {}).get(name)
        try:
            return AgentTaskStatus.model_validate(data) if isinstance(data, dict) else None
        except ValidationError:
            return None

    @property
    def holder(self) -> int | None:
        return lock_holder(self.path)

    def logs(self, task: str) -> list[tuple[int, Path]]:
        """The task's attempt logs, first attempt first."""
        try:
            entries = list((self.path / "tasks" / task).iterdir())
        except OSError:
            return []
        found = [(int(m.group(1)), p) for p in entries if (m := _ATTEMPT_LOG.fullmatch(p.name))]
        return sorted(found)


def find_runs(root: Path, name: str | None = None) -> list[RunDir]:
    """State directories under `root` (the runs directory), of the run `name` or of every run."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    out = []
    for path in entries:
        if not path.is_dir() or path.is_symlink() or not (path / STATUS_FILE).is_file():
            continue
        stem, _, key = path.name.rpartition("-")
        if name is None or (stem == name and len(key) == 10):
            out.append(RunDir(path))
    return out


def resolve(name: str, state_dir: Path | None, cache_root: Path) -> RunDir:
    """The state directory of run `name`: the one given, or the only one under the cache's runs directory."""
    if state_dir is not None:
        found = RunDir(state_dir.absolute())
        if not (found.path / STATUS_FILE).is_file():
            raise NoSuchRun(f"--state-dir {state_dir}: no local run there (no {STATUS_FILE})")
        run = found.run
        if run is not None and run.name != name:
            raise NoSuchRun(f"--state-dir {state_dir} holds run {run.name!r}, not {name!r}")
        return found
    root = runs_root(cache_root)
    found_runs = find_runs(root, name)
    if not found_runs:
        raise NoSuchRun(f"no local run named {name!r} under {root} (give --state-dir if it used one)")
    if len(found_runs) > 1:
        listed = ", ".join(str(r.path) for r in found_runs)
        raise NoSuchRun(f"{len(found_runs)} local runs are named {name!r} (one per repository): "
                        f"give --state-dir, one of {listed}")
    return found_runs[0]


def request_cancel(run: RunDir) -> None:
    """Ask the `braid run` holding `run` to stop: it stops its agents (their work is pushed) and ends Cancelled."""
    tmp = run.path / f".{CANCEL_FILE}.{os.getpid()}"
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(run.path / CANCEL_FILE)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(1 << 20)
    except OSError:
        return b""


def follow(run: RunDir, task: str, attempt: int | None, *, follow: bool, poll: float = 0.2,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[tuple[int, bytes]]:
    """The task's log as (attempt, bytes): one attempt's, or the latest's; with `follow`, every byte
    as it is written, moving on to each new attempt, until the task has ended or the run let go."""
    logs = [(n, p) for n, p in run.logs(task) if attempt is None or n == attempt]
    current = logs[-1] if logs else None
    offset = 0
    done = False
    while True:
        while current is not None and (chunk := _read_from(current[1], offset)):
            offset += len(chunk)
            yield current[0], chunk
        if not follow or done:
            return
        newer = [(n, p) for n, p in run.logs(task) if current is None or n > current[0]]
        if attempt is None and newer:
            current, offset = newer[0], 0
            continue
        state = run.task(task)
        ended = state is not None and state.phase in ENDED_TASK_PHASES and state.attempts <= (current or (0,))[0]
        # one more read after the end: what was written since the last one
        done = run.holder is None or ended or (attempt is not None and current is None)
        if not done:
            sleep(poll)
