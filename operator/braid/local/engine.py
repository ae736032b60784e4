"""A ParallelRun on one machine: `braid agent-run` subprocesses under maxParallel, then the merge."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from braid.api import AgentTaskSpec, MergeStatus, ParallelRun, ParallelRunStatus, TaskStatus, Usage
from braid.gitops import ObjectCache, Repo, RepositoryUnreachable, default_cache_root, git_auth_env, normalize_url
from braid.merge import MergeRequest, MergeTask, run_merge
from braid.plan import RETRYABLE, Spend, decide, exhausted, nodes_of, spent, task_share, validate
from braid.runner import TaskResult

from .progress import Progress

log = logging.getLogger("braid.local")

KILL_GRACE_SECONDS = 30.0


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Child:
    task: str
    proc: subprocess.Popen[bytes]
    started: float
    result_path: Path
    share: Spend
    deadline: float
    terminated: bool = False


@dataclass
class LocalOptions:
    state_dir: Path | None = None
    cache_dir: Path | None = None
    credentials_dir: Path | None = None
    api_key_file: Path | None = None
    progress: bool | None = None
    """None: live display on a terminal, plain lines otherwise."""
    poll_seconds: float = 0.1


@dataclass
class LocalRun:
    run: ParallelRun
    options: LocalOptions = field(default_factory=LocalOptions)

    def __post_init__(self) -> None:
        self.url = normalize_url(self.run.spec.repo.url)
        self.nodes = nodes_of(self.run.spec.tasks)
        self.cache_root = self.options.cache_dir or default_cache_root()
        key = hashlib.sha256(self.url.encode()).hexdigest()[:10]
        self.state_dir = self.options.state_dir or (self.cache_root.parent / "runs" / f"{self.run.name}-{key}")
        self.status = ParallelRunStatus()
        self.children: dict[str, Child] = {}
        self.not_before: dict[str, float] = {}
        self.cancelled = False
        self.progress = Progress(self.run, self.status, live=False)

    # -- checks before anything is created -------------------------------------------------

    def preflight(self) -> None:
        """Everything that can be known wrong before a file is written. Raises InvalidRun."""
        from braid.plan import PlanError

        try:
            validate(self.nodes)
        except PlanError as exc:
            raise InvalidRun(str(exc)) from None
        probe = Repo(Path.cwd())
        code, out, err = probe.run("ls-remote", "--heads", "--tags", self.url, check=False)
        if code != 0:
            detail = (err.strip().splitlines() or ["not a git repository"])[-1]
            raise InvalidRun(f"repo.url: cannot read repository {self.run.spec.repo.url!r}: {detail}")
        refs = {line.split("\t", 1)[1] for line in out.splitlines() if "\t" in line}
        base = self.run.spec.repo.base_ref
        if f"refs/heads/{base}" not in refs and f"refs/tags/{base}" not in refs and not _looks_like_sha(base):
            raise InvalidRun(f"repo.baseRef: {base!r} is not a branch or tag of {self.run.spec.repo.url}")

    # -- the run ------------------------------------------------------------------------------

    def execute(self) -> ParallelRunStatus:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "tasks").mkdir(exist_ok=True)
        self._resume()
        self.status.phase = "Running"
        self.status.started_at = self.status.started_at or now()
        self._save()
        progress = self.progress = Progress(self.run, self.status, live=self.options.progress)
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        previous_term = signal.signal(signal.SIGTERM, self._on_interrupt)
        try:
            progress.start()
            while True:
                self._reap()
                if self.cancelled:
                    self._cancel_all(progress)
                    break
                if self._schedule(progress):
                    break
                progress.tick({t: c.started for t, c in self.children.items()})
                time.sleep(self.options.poll_seconds)
            progress.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
        if not self.cancelled:
            self._merge(progress)
        self._finish()
        return self.status

    def _on_interrupt(self, signum: int, _frame: object) -> None:
        self.cancelled = True

    def _schedule(self, progress: Progress) -> bool:
        """Start what may start; return True when every task has ended."""
        phases = {name: t.phase for name, t in self.status.tasks.items()}
        waiting = {n for n, at in self.not_before.items() if at > time.monotonic()}
        for n in waiting:
            phases[n] = "Running"  # backing off: holds its slot's place but is not started
        used = self._spent()
        decision = decide(
            self.nodes,
            phases,
            self.run.spec.max_parallel,
            budget_exhausted=exhausted(self.run.spec.budget, used),
            suspended=self.run.spec.suspend,
        )
        for name, skip in decision.skip.items():
            self._set(name, phase="Skipped", reason=skip.reason, message=skip.message, finished_at=now())
            progress.event(name, "Skipped", skip.message)
        for name in decision.start:
            self._start(name, used, progress)
            used = self._spent()
        if decision.skip or decision.start:
            self._save()
        return decision.all_ended and not self.children and not waiting

    def _spent(self) -> Spend:
        ended = [t.usage for t in self.status.tasks.values() if t.usage and t.phase != "Running"]
        return spent(ended)

    def _reserved(self) -> Spend:
        return Spend(sum(c.share.cost_usd for c in self.children.values()),
                     sum(c.share.tokens for c in self.children.values()))

    def _start(self, name: str, used: Spend, progress: Progress) -> None:
        task = self.run.spec.task(name)
        unstarted = sum(1 for t in self.status.tasks.values() if t.phase == "Pending")
        share = task_share(self.run.spec.budget, used, self._reserved(), unstarted)
        spec = AgentTaskSpec(
            run=self.run.name,
            task=name,
            prompt=task.prompt,
            depends_on=task.depends_on,
            paths=task.paths,
            repo=self.run.spec.repo.model_copy(update={"url": self.url}),
            branch=self.run.branch_of(name),
            dependency_branches=[self.run.branch_of(d) for d in task.depends_on],
            agent=self.run.spec.agent_for(task),
            resources=self.run.spec.resources,
            timeout_seconds=self.run.spec.task_timeout_seconds,
            retry=self.run.spec.retry,
            budget=share,
        )
        task_dir = self.state_dir / "tasks" / name
        task_dir.mkdir(parents=True, exist_ok=True)
        attempt = self.status.tasks[name].attempts + 1
        spec_path = task_dir / "spec.json"
        spec_path.write_text(json.dumps(spec.wire(), indent=2))
        result_path = task_dir / f"result-{attempt}.json"
        result_path.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "braid", "agent-run",
            "--task", str(spec_path),
            "--workdir", str(self.state_dir / "work" / name),
            "--cache-dir", str(self.cache_root),
            "--result", str(result_path),
        ]
        if self.options.credentials_dir:
            argv += ["--credentials-dir", str(self.options.credentials_dir)]
        if self.options.api_key_file:
            argv += ["--api-key-file", str(self.options.api_key_file)]
        logfile = open(task_dir / f"attempt-{attempt}.log", "wb")  # noqa: SIM115 - owned by the child
        env = {**os.environ, "BRAID_ATTEMPT": str(attempt), "PYTHONUNBUFFERED": "1"}
        # its own session: Ctrl-C reaches only us, and we stop children in order
        proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        logfile.close()
        share_spend = Spend(share.max_cost_usd or 0.0, share.max_tokens or 0) if share else Spend()
        self.children[name] = Child(name, proc, time.monotonic(), result_path, share_spend,
                                    time.monotonic() + spec.timeout_seconds + KILL_GRACE_SECONDS)
        self.not_before.pop(name, None)
        self._set(name, phase="Running", attempts=attempt, branch=spec.branch, started_at=now(),
                  reason=None, message=None, finished_at=None)
        progress.event(name, "Running", f"attempt {attempt}" if attempt > 1 else "")

    def _reap(self) -> None:
        for name, child in list(self.children.items()):
            if child.proc.poll() is None:
                if time.monotonic() > child.deadline and not child.terminated:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                    child.terminated = True
                continue
            del self.children[name]
            self._record(name, child)
        self._save()

    def _record(self, name: str, child: Child) -> None:
        try:
            result = TaskResult.model_validate_json(child.result_path.read_text())
        except (OSError, ValueError):
            code = child.proc.returncode
            why = "killed after its deadline" if child.terminated else f"exited with code {code} without a result"
            result = TaskResult(run=self.run.name, task=name, phase="Failed", branch=self.run.branch_of(name),
                                reason="Timeout" if child.terminated else "Crashed", message=why)
        state = self.status.tasks[name]
        usage = (state.usage or Usage()) + result.usage if state.attempts > 1 else result.usage
        self._set(name, phase=result.phase, commit=result.commit or state.commit, reason=result.reason,
                  message=result.message, changed_files=result.changed_files, usage=usage, finished_at=now())
        self.progress.event(name, result.phase, "")
        if result.phase == "Failed" and result.reason in RETRYABLE and state.attempts <= self.run.spec.retry.limit:
            delay = self.run.spec.retry.backoff_seconds * (2 ** (state.attempts - 1))
            self.not_before[name] = time.monotonic() + delay
            self._set(name, phase="Pending", finished_at=None)

    def _set(self, name: str, **changes: object) -> None:
        state = self.status.tasks[name]
        for key, value in changes.items():
            setattr(state, key, value)
        self.status.recount()

    def _cancel_all(self, progress: Progress) -> None:
        for child in self.children.values():
            try:
                os.killpg(child.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(self.options.poll_seconds)
        for name, child in list(self.children.items()):
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
            self._reap()
        for name, state in self.status.tasks.items():
            if state.phase in ("Pending", "Running"):
                self._set(name, phase="Cancelled", reason="Cancelled", message="the run was interrupted",
                          finished_at=now())
                progress.event(name, "Cancelled", "")

    # -- merge and final status ----------------------------------------------------------------

    def _merge(self, progress: Progress) -> None:
        succeeded = [t for t in self.run.spec.tasks if self.status.tasks[t.name].phase == "Succeeded"]
        others = [t.name for t in self.run.spec.tasks if self.status.tasks[t.name].phase != "Succeeded"]
        branch = self.run.integration_branch
        if not succeeded:
            self.status.merge = MergeStatus(phase="Skipped", branch=branch, not_merged=others,
                                            message="no task succeeded")
            return
        self.status.phase = "Merging"
        self._save()
        progress.message(f"merging {len(succeeded)} branches into {branch}")
        request = MergeRequest(
            run=self.run.name,
            repo=self.run.spec.repo.model_copy(update={"url": self.url}),
            integration_branch=branch,
            on_conflict=self.run.spec.merge.on_conflict,
            tasks=[MergeTask(name=t.name, branch=self.run.branch_of(t.name), depends_on=t.depends_on)
                   for t in succeeded],
            not_merged=others,
        )
        self.status.merge = run_merge(request, ObjectCache(self.cache_root), _auth_env(self.options))

    def _finish(self) -> None:
        counts = self.status.counts
        merge = self.status.merge
        if self.cancelled:
            self.status.phase = "Cancelled"
        elif counts.failed or counts.skipped or counts.cancelled or (merge and merge.phase == "Failed"):
            self.status.phase = "Failed"
        elif merge and merge.phase == "Conflicted":
            self.status.phase = "Conflicted"
        else:
            self.status.phase = "Succeeded"
        self.status.finished_at = now()
        self._save()

    def _save(self) -> None:
        path = self.state_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status.wire(), indent=2))
        tmp.replace(path)

    # -- re-runs ---------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Keep a task's earlier success when its spec is unchanged and its branch still holds that commit."""
        fingerprint = hashlib.sha256(json.dumps(self.run.spec.wire(), sort_keys=True).encode()).hexdigest()
        marker = self.state_dir / "spec.sha256"
        previous: ParallelRunStatus | None = None
        status_file = self.state_dir / "status.json"
        if marker.exists() and marker.read_text() == fingerprint and status_file.exists():
            try:
                previous = ParallelRunStatus.model_validate_json(status_file.read_text())
            except ValueError:
                previous = None
        marker.write_text(fingerprint)
        tips: dict[str, str] = {}
        if previous:
            try:
                cache = ObjectCache(self.cache_root).update(self.url, _auth_env(self.options))
                tips = {t.name: cache.rev(f"refs/heads/{self.run.branch_of(t.name)}") or "" for t in
                        self.run.spec.tasks}
            except RepositoryUnreachable:
                tips = {}
        self.status = ParallelRunStatus(started_at=now())
        for task in self.run.spec.tasks:
            old = previous.tasks.get(task.name) if previous else None
            if old and old.phase == "Succeeded" and old.commit and tips.get(task.name) == old.commit:
                kept = old.model_copy(deep=True)
                kept.message = "unchanged since the previous run"
                self.status.tasks[task.name] = kept
            else:
                self.status.tasks[task.name] = TaskStatus(phase="Pending", branch=self.run.branch_of(task.name))
        self.status.recount()


class InvalidRun(ValueError):
    """Bad input found before anything was created (exit code 2)."""


def _looks_like_sha(ref: str) -> bool:
    return 7 <= len(ref) <= 40 and all(c in "0123456789abcdef" for c in ref)


def _auth_env(options: LocalOptions) -> dict[str, str]:
    return git_auth_env(options.credentials_dir)
