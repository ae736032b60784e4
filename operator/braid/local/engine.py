"""A ParallelRun on one machine: `braid agent-run` subprocesses under maxParallel, then the merge.

Every decision is braid.plan's, as on the cluster: plan.step says what starts, what is
skipped, what retries when, when to merge and what the run's status is; plan.attempt says
what an ended attempt means. This module only turns those decisions into processes and
files, and handles what only a local run has: signals, a state directory, re-runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from braid.api import (
    AgentTaskSpec,
    AgentTaskStatus,
    Budget,
    MergeStatus,
    ParallelRun,
    ParallelRunStatus,
    ResourceUsage,
    TaskResult,
)
from braid.api.common import COMMIT_PATTERN
from braid.api.events import RunEvent
from braid.api.quantity import format_bytes
from braid.confine import CgroupSetup, Limits, LimitsUnavailable, SandboxUnavailable, find_sandbox
from braid.confine.limits import Cgroup, descendants, detect, proc_usage
from braid.gitops import ObjectCache, Repo, RepositoryUnreachable, default_cache_root, git_auth_env, normalize_url
from braid.gitops.secrets import Secrets, credential_files
from braid.merge import LocalVerifier, run_merge
from braid.plan import (
    AttemptEnd,
    Event,
    PlanError,
    Step,
    TaskPolicy,
    TaskView,
    add_usage,
    attempt_ended,
    attempt_spec,
    end_without_attempt,
    nodes_of,
    start_attempt,
    step,
    task_conditions,
    task_spec,
    topological_order,
    validate,
)
from braid.text import printable

from .children import forget, spawn, stop_leftovers
from .clean import RunState, inspect, remove_copies, write_run_record
from .control import CANCEL_FILE, RUN_FILE, read_json, state_dir_for
from .lock import state_lock
from .progress import Progress

log = logging.getLogger("braid.local")

# a file read from disk is the spec's first generation, as the API server would number it
GENERATION = 1
# the task table and the per-task lines already show these
TASK_TABLE_EVENTS = frozenset({"TaskStarted", "TaskSucceeded", "TaskFailed", "TaskSkipped", "TaskCancelled"})


RESOLUTIONS_FILE = "resolutions.json"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Child:
    task: str
    attempt: int
    proc: object
    """The subprocess.Popen of `braid agent-run`."""
    started: float
    result_path: Path
    deadline: float
    terminated: bool = False
    cgroup: Cgroup | None = None
    """The attempt's own cgroup, which the agent's processes run in; None without one."""
    enforced_by: str = "none"
    sampled: float = 0.0
    cpu_seconds: float = 0.0
    peak: int = 0


@dataclass
class LocalOptions:
    state_dir: Path | None = None
    cache_dir: Path | None = None
    credentials_dir: Path | None = None
    api_key_file: Path | None = None
    pr_token: str | None = field(default=None, repr=False)
    """spec.delivery.pullRequest's token (--pr-token-file, $BRAID_PR_TOKEN): used by the merge, shown nowhere."""
    progress: bool | None = None
    """None: live display on a terminal, plain lines otherwise."""
    poll_seconds: float = 0.1
    policy: TaskPolicy = field(default_factory=TaskPolicy)
    events: TextIO | None = None
    """Where `--events` writes one JSON line per event; None: nowhere."""
    sandbox: str = "auto"
    """auto: bubblewrap when it works here, a loud warning when not; bwrap: required; none: unconfined."""
    shared: list[Path] = field(default_factory=list)
    """Directories every sandboxed agent may write (--share)."""
    keep_workdirs: bool = False
    """Keep the working copies of a run that succeeded (a run that did not keeps them anyway)."""
    limits: str = "auto"
    """auto: cgroups where they work, else rlimits and a warning; cgroup: required; rlimit: never cgroups."""
    sample_seconds: float = 1.0
    """How often each running agent's CPU and memory are measured."""


# What an agent-run needs of braid's environment; nothing else (a token, a key) is passed on.
PASSED_ENV = ("PATH", "HOME", "USER", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
              "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
              "XDG_CACHE_HOME", "ANTHROPIC_BASE_URL", "VIRTUAL_ENV")
PASSED_PREFIXES = ("LC_", "BRAID_", "COVERAGE_")
SECRET_ENV = ("ANTHROPIC_API_KEY", "BRAID_API_KEY", "BRAID_PR_TOKEN")


def agent_run_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in environ.items()
            if (k in PASSED_ENV or k.startswith(PASSED_PREFIXES)) and k not in SECRET_ENV}


@dataclass
class LocalRun:
    run: ParallelRun
    options: LocalOptions = field(default_factory=LocalOptions)

    def __post_init__(self) -> None:
        self.url = normalize_url(self.run.spec.repo.url)
        self.nodes = nodes_of(self.run.spec.tasks)
        self.cache_root = (self.options.cache_dir or default_cache_root()).absolute()
        state_dir = self.options.state_dir or state_dir_for(self.cache_root, self.run.name, self.url)
        # agents run elsewhere than the caller: every path they are given is absolute
        self.state_dir = state_dir.absolute()
        self.run = self.run.model_copy(deep=True)
        self.run.metadata.generation = self.run.metadata.generation or GENERATION
        self.run.status = ParallelRunStatus()
        self.tasks: dict[str, AgentTaskStatus] = {}
        """The tasks of the spec, then the resolvers (<task>.resolve) as they start."""
        self.resolver_specs: dict[str, AgentTaskSpec] = {}
        self.resolution_records: dict[str, str] = {}
        """Task -> what an earlier run's resolver last pushed to the task's resolution branch."""
        self.shares: dict[str, Budget | None] = {}
        self.admitted: set[str] = set()
        self.children: dict[str, Child] = {}
        self.merge: MergeStatus | None = None
        self.cancelled = False
        self.progress = Progress(self.run, live=False)
        self.sandboxed = False
        self.sandbox_problem: str | None = None
        self.cgroups: CgroupSetup | None = None
        """How attempts are held to their limits; None until checked."""
        # a key from the environment reaches each agent-run on its stdin, never in its environment
        self.env_api_key = None if self.options.api_key_file else (os.environ.get("ANTHROPIC_API_KEY") or None)
        self.workdirs: RunState | None = None
        """The working copies as the end of the run left them (None: not looked at, all kept)."""

    @property
    def status(self) -> ParallelRunStatus:
        return self.run.status or ParallelRunStatus()

    # -- checks before anything is created -------------------------------------------------

    def preflight(self) -> None:
        """Everything that can be known wrong before a file is written. Raises InvalidRun."""
        try:
            validate(self.nodes)
        except PlanError as exc:
            raise InvalidRun(str(exc)) from None
        given = self.run.spec.repo.url
        if self.url.startswith("file://"):
            local_path: Path | None = Path(self.url[len("file://"):])
        else:
            local_path = Path(self.url) if self.url.startswith("/") else None
        if local_path is not None and not (local_path / "HEAD").is_file() and not (local_path / ".git").exists():
            what = "does not exist" if not local_path.exists() else "is not a git repository"
            raise InvalidRun(f"repo.url: {given!r}: {local_path} {what}")
        probe = Repo(Path.cwd())
        code, out, err = probe.run("ls-remote", "--heads", "--tags", "--", self.url, check=False)
        if code != 0:
            detail = (err.strip().splitlines() or ["git ls-remote failed"])[-1]
            raise InvalidRun(f"repo.url: cannot read repository {given!r}: {detail}")
        self._check_sandbox()
        self._check_limits()
        for shared in self.options.shared:
            if not shared.is_dir():
                raise InvalidRun(f"--share {shared}: not a directory")
        refs = {line.split("\t", 1)[1] for line in out.splitlines() if "\t" in line}
        base = self.run.spec.repo.base_ref
        if f"refs/heads/{base}" not in refs and f"refs/tags/{base}" not in refs:
            if not _looks_like_sha(base):
                raise InvalidRun(f"repo.baseRef: {base!r} is not a branch or tag of {given}")
            # a commit id: it must be a commit the repository has (fetched into the cache, as every task would)
            try:
                cache = ObjectCache(self.cache_root).update(self.url, self._auth_env())
            except RepositoryUnreachable as exc:
                raise InvalidRun(f"repo.url: cannot fetch {given!r}: {exc}") from None
            if cache.rev(base) is None:
                raise InvalidRun(f"repo.baseRef: {base!r} is not a branch, tag or commit of {given}")

    def _check_sandbox(self) -> None:
        mode = self.options.sandbox
        if mode == "none":
            self.sandbox_problem = "--sandbox none was given"
            return
        try:
            find_sandbox()
        except SandboxUnavailable as exc:
            if mode == "bwrap":
                raise InvalidRun(f"--sandbox bwrap: {exc}") from None
            self.sandbox_problem = str(exc)
            return
        self.sandboxed = True

    def _wanted_limits(self) -> tuple[set[str], set[str]]:
        """The controllers the run's limits need, and the limited resources a local run does not enforce."""
        wanted: set[str] = set()
        unenforced: set[str] = set()
        for task in self.run.spec.tasks:
            limits = Limits.of(self.run.spec.resources_for(task))
            wanted |= limits.wanted
            unenforced |= set(limits.unenforced)
        return wanted, unenforced

    def _check_limits(self) -> None:
        mode = self.options.limits
        if mode == "rlimit":
            self.cgroups = CgroupSetup(problems=("--limits rlimit was given",))
            return
        setup = detect()
        if mode == "cgroup":
            wanted, _ = self._wanted_limits()
            missing = sorted(c for c in wanted if not setup.has(c))
            if setup.version is None or missing:
                what = f"no cgroup for {', '.join('limits.' + c for c in missing)}" if missing else "no usable cgroup"
                raise InvalidRun(f"--limits cgroup: {what} ({'; '.join(setup.problems) or 'unknown reason'})")
        self.cgroups = setup

    def limits_warning(self) -> str | None:
        """The one line saying which limits are not held by a cgroup, and how they are held instead, or None."""
        if self.cgroups is None:
            return None
        return self.cgroups.warning(*self._wanted_limits())

    def sandbox_warning(self) -> str | None:
        """What to tell the user when agents run unconfined, or None."""
        if self.sandboxed:
            return None
        who = "agents and spec.merge.verify run" if self.run.spec.merge.verify is not None else "agents run"
        return (f"WARNING: {who} WITHOUT a sandbox ({self.sandbox_problem}): the code they run can read "
                "and change everything your user can, including other worktrees, credentials in your home "
                "directory and the remote when it is a local path. Install bubblewrap (Debian/Ubuntu: "
                "apt-get install bubblewrap) and see docs/security.md.")

    # -- the run ------------------------------------------------------------------------------

    def execute(self) -> ParallelRunStatus:
        """Run to the end. Raises RunLocked when another `braid run` uses the same state directory."""
        if not self.sandboxed and self.sandbox_problem is None:
            self._check_sandbox()
        if self.cgroups is None:
            self._check_limits()
        for warning in (self.sandbox_warning(), self.limits_warning()):
            if warning:
                log.warning("%s", warning)
        with state_lock(self.state_dir):
            stopped = stop_leftovers(self._registry(), self.options.policy.deadline_grace_seconds)
            if stopped:
                log.warning("stopped agents left running by an earlier run: %s", ", ".join(stopped))
            (self.state_dir / "tasks").mkdir(parents=True, exist_ok=True)
            write_run_record(self.state_dir, self.run.name, self.url, self.cache_root)
            # a `braid cancel` meant for an earlier run of this state directory
            (self.state_dir / CANCEL_FILE).unlink(missing_ok=True)
            _write_json(self.state_dir / RUN_FILE, self.run.model_copy(update={"status": None}).wire())
            self._resume()
            self._loop()
            self._save()
            if self.status.phase == "Succeeded" and not self.options.keep_workdirs:
                self._remove_workdirs()
            self._emit(Event("Warning" if self.status.phase in ("Failed", "Conflicted") else "Normal", "RunEnded",
                             self.status.message or self.status.phase or ""), phase=self.status.phase)
        return self.status

    def _loop(self) -> None:
        progress = self.progress = Progress(self.run, live=self.options.progress)
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        previous_term = signal.signal(signal.SIGTERM, self._on_interrupt)
        try:
            progress.start()
            while True:
                self._reap()
                if not self.cancelled and (self.state_dir / CANCEL_FILE).exists():
                    self.cancelled = True
                    self._emit(Event("Normal", "CancelRequested", "braid cancel: stopping every agent"))
                    progress.message("braid cancel: stopping every agent; their work is pushed")
                if self.cancelled or self.run.spec.cancel:
                    self._cancel_all()
                decided = self._step()
                if decided.merge is not None:
                    self.merge = run_merge(decided.merge.model_copy(update={"repo": self._repo()}),
                                           ObjectCache(self.cache_root), self._auth_env(),
                                           verifier=self._verifier(), redact=self._secrets().redact,
                                           pr_token=self.options.pr_token)
                    continue
                if decided.closed or decided.finished:
                    break
                if self.status.phase == "Suspended" and not self.children:
                    progress.message(self.status.message or "suspended")
                    break
                self._measure()
                progress.tick({t: c.started for t, c in self.children.items()})
                time.sleep(self.options.poll_seconds)
        finally:
            for child in self.children.values():
                if child.cgroup is not None:
                    child.cgroup.remove()
            progress.stop()
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)

    def _remove_workdirs(self) -> None:
        """The working copies of a run that succeeded go, as `braid clean` would remove them: only
        those whose work is all on the remote (checked there); any other stays and is reported."""
        state = RunState(path=self.state_dir, name=self.run.name, repository=self.url)
        inspect(state, self.cache_root, self._auth_env())
        remove_copies(state)
        self.workdirs = state

    def _on_interrupt(self, signum: int, _frame: object) -> None:
        self.cancelled = True

    def _step(self) -> Step:
        """Ask plan.step, then do what it decided: skip, start, retry."""
        now = utcnow()
        decided = step(self.run, self._views(), self.merge, now, cancelled=self.cancelled,
                       resolvers=self._resolver_views())
        for name, skip in decided.skip.items():
            end_without_attempt(self.tasks[name], "Skipped", skip.reason, skip.message, now)
            self._conditions(name, now)
        for start in decided.start:
            self.admitted.add(start.task)
            self.shares[start.task] = start.budget
            self._spawn(start.task, start.budget, now)
        for resolver in decided.resolve:
            name = resolver.spec.task
            self.resolver_specs[name] = resolver.spec
            self.tasks[name] = AgentTaskStatus(phase="Pending", branch=resolver.spec.branch)
            self.admitted.add(name)
            self.shares[name] = resolver.spec.budget
            self._spawn(name, resolver.spec.budget, now)
        for retry in decided.retry:
            if retry.task not in self.children and retry.at <= now:
                self._spawn(retry.task, retry.budget, now)
        for event in decided.events:
            self._show(event)
        self.run.status = decided.status
        if decided.merge is not None and self.resolution_records:
            decided.merge = decided.merge.model_copy(update={
                "resolution_records": {**self.resolution_records, **decided.merge.resolution_records}})
        if decided.skip or decided.start or decided.retry or decided.resolve:
            # what was just started or skipped shows in the status at once
            self.run.status = step(self.run, self._views(), self.merge, now, cancelled=self.cancelled,
                                   resolvers=self._resolver_views()).status
        self._save()
        return decided

    def _views(self) -> dict[str, TaskView]:
        return {name: TaskView(status=state, admitted=name in self.admitted, share=self.shares.get(name))
                for name, state in self.tasks.items() if name not in self.resolver_specs}

    def _resolver_views(self) -> dict[str, TaskView]:
        return {spec.resolves or name: TaskView(status=self.tasks[name], admitted=name in self.admitted,
                                               share=self.shares.get(name))
                for name, spec in self.resolver_specs.items()}

    def _show(self, event: Event) -> None:
        self._emit(event, task=_task_named(event, self.tasks))
        if event.reason not in TASK_TABLE_EVENTS:
            self.progress.message(event.message)

    def _emit(self, event: Event, **about: object) -> None:
        """One line of --events."""
        out = self.options.events
        if out is None:
            return
        line = RunEvent(time=utcnow().isoformat().replace("+00:00", "Z"), run=self.run.name, type=event.type,
                        reason=event.reason, message=printable(event.message, newlines=False),
                        **{k: v for k, v in about.items() if v is not None})
        out.write(line.model_dump_json(by_alias=True, exclude_none=True) + "\n")
        out.flush()

    def _spawn(self, name: str, budget: Budget | None, now: datetime) -> None:
        state = self.tasks[name]
        attempt = state.attempts + 1
        base = self.resolver_specs.get(name) or task_spec(self.run, self.run.spec.task(name))
        spec = attempt_spec(base, state, budget).model_copy(update={"repo": self._repo()})
        task_dir = self.state_dir / "tasks" / name
        task_dir.mkdir(parents=True, exist_ok=True)
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
            argv += ["--credentials-dir", str(self.options.credentials_dir.absolute())]
        if self.options.api_key_file:
            argv += ["--api-key-file", str(self.options.api_key_file.absolute())]
        elif self.env_api_key:
            argv += ["--api-key-stdin"]
        if self.sandboxed:
            argv += ["--sandbox", "bwrap", "--hide", str(self.state_dir)]
            for shared in self.options.shared:
                argv += ["--share", str(shared)]
        limits = Limits.of(spec.resources)
        try:
            cgroup = self._cgroup_for(name, attempt, limits)
        except (OSError, LimitsUnavailable) as exc:
            start_attempt(state, attempt, now)
            self.progress.event(name, "Running", f"attempt {attempt}" if attempt > 1 else "")
            end = AttemptEnd(attempt, failure=("LimitsUnavailable", f"cannot make the attempt's cgroup: {exc}"),
                             source=f"attempt {attempt} of task {name}")
            self._ended(name, attempt, end, now)
            return
        enforced_by = "none"
        if cgroup is not None:
            enforced_by = f"cgroup v{cgroup.version}"
            for path in cgroup.paths:
                argv += ["--agent-cgroup", str(path)]
        if limits.memory is not None and (cgroup is None or "memory" not in cgroup.dirs):
            argv += ["--agent-rlimit-as", str(limits.memory)]
            enforced_by = "rlimit" if cgroup is None else enforced_by
        env = {**agent_run_env(os.environ), "BRAID_ATTEMPT": str(attempt), "PYTHONUNBUFFERED": "1"}
        try:
            proc = spawn(argv, env=env, log_path=task_dir / f"attempt-{attempt}.log", registry=self._registry(),
                         task=name, stdin=(self.env_api_key + "\n").encode() if self.env_api_key else None,
                         cgroups=[str(p) for p in cgroup.paths] if cgroup is not None else [])
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        grace = self.options.policy.deadline_grace_seconds
        self.children[name] = Child(name, attempt, proc, time.monotonic(), result_path,
                                    time.monotonic() + spec.timeout_seconds + grace, cgroup=cgroup,
                                    enforced_by=enforced_by)
        start_attempt(state, attempt, now)
        state.resource_usage = ResourceUsage(enforced_by=enforced_by)  # type: ignore[arg-type]
        self._conditions(name, now)
        self.progress.event(name, "Running", f"attempt {attempt}" if attempt > 1 else "")

    def _cgroup_for(self, name: str, attempt: int, limits: Limits) -> Cgroup | None:
        """The attempt's own cgroup, with its limits set; None where cgroups are not used.
        Raises when one should be made and cannot be (after a warning, when rlimits may stand in)."""
        setup = self.cgroups
        if setup is None or setup.version is None:
            return None
        try:
            return Cgroup.create(setup, f"braid-{os.getpid()}-{name}-{attempt}", limits)
        except OSError as exc:
            if self.options.limits == "cgroup":
                raise
            log.warning("WARNING: resource limits: cannot make a cgroup for attempt %d of task %s (%s): "
                        "its agent runs without one", attempt, name, exc.strerror or exc)
            return None

    # -- measuring -------------------------------------------------------------------------------

    def _measure(self, force: bool = False) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if force or now - child.sampled >= self.options.sample_seconds:
                self._sample(child, now)

    def _sample(self, child: Child, now: float) -> None:
        """CPU and memory of the attempt's agent: from its cgroup, or from /proc for the processes
        below its `braid agent-run` (where there is no cgroup)."""
        throttled = None
        if child.cgroup is not None:
            sample = child.cgroup.sample()
            cpu, memory, peak, throttled = (sample.cpu_seconds, sample.memory, sample.memory_peak,
                                            sample.throttled_seconds)
        else:
            pid = child.proc.pid  # type: ignore[attr-defined]
            cpu, memory = proc_usage(descendants(pid))
            cpu = max(cpu, child.cpu_seconds)
            peak = max(child.peak, memory)
        cores = max(0.0, (cpu - child.cpu_seconds) / (now - child.sampled)) if child.sampled else 0.0
        child.sampled, child.cpu_seconds, child.peak = now, cpu, peak
        self.tasks[child.task].resource_usage = ResourceUsage(
            enforced_by=child.enforced_by,  # type: ignore[arg-type]
            cpu_cores=round(cores, 3), cpu_seconds=round(cpu, 3),
            cpu_throttled_seconds=round(throttled, 3) if throttled is not None else None,
            memory_bytes=memory, memory_peak_bytes=peak, sampled_at=utcnow().isoformat().replace("+00:00", "Z"))

    def _reap(self) -> None:
        for name, child in list(self.children.items()):
            proc = child.proc
            if proc.poll() is None:  # type: ignore[attr-defined]
                if time.monotonic() > child.deadline and not child.terminated:
                    os.killpg(proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
                    child.terminated = True
                continue
            del self.children[name]
            oom = False
            if child.cgroup is not None:
                self._sample(child, time.monotonic())
                oom = child.cgroup.out_of_memory(killed=False)
                child.cgroup.remove()
            forget(self._registry(), name)
            self._record(child, oom)

    def _record(self, child: Child, oom: bool = False) -> None:
        name, now = child.task, utcnow()
        state = self.tasks[name]
        result = _read_result(child.result_path)
        add_usage(state, child.attempt, result)
        if self.cancelled and not (result is not None and result.phase == "Succeeded"):
            if result is not None and result.changed_files:
                state.changed_files = result.changed_files
            end_without_attempt(state, "Cancelled", "Cancelled", "the run was interrupted", now)
            self.admitted.discard(name)
        else:
            code = child.proc.returncode  # type: ignore[attr-defined]
            source = f"attempt {child.attempt} of task {name}"
            if oom:
                failure = ("OOMKilled", f"{source} ran out of memory; raise the memory limit")
            else:
                failure = ("Crashed", f"exited with code {code} without a result")
            end = AttemptEnd(child.attempt, result, timed_out=child.terminated, failure=None if result else failure,
                             source=source)
            self._ended(name, child.attempt, end, now)
            return
        self._conditions(name, now)
        self._show_end(name)

    def _ended(self, name: str, attempt: int, end: AttemptEnd, now: datetime) -> None:
        """Record how an attempt ended, as plan.attempt decides: succeeded, failed, or retried later."""
        state = self.tasks[name]
        for event in attempt_ended(state, self.run.spec.retry, self.run.spec.task_timeout_seconds, end, now,
                                   self.options.policy):
            self._emit(event, task=name, attempt=attempt, phase=state.phase)
        if state.phase != "Pending":
            self.admitted.discard(name)
        self._conditions(name, now)
        self._show_end(name)

    def _show_end(self, name: str) -> None:
        state = self.tasks[name]
        detail = " ".join(x for x in ((state.commit or "")[:10] if state.phase == "Succeeded" else "",
                                      state.reason or "", state.message or "") if x)
        used = state.resource_usage
        if used is not None and used.memory_peak_bytes:
            detail += f" (peak memory {format_bytes(used.memory_peak_bytes)}, CPU {used.cpu_seconds:.1f}s)"
        self.progress.event(name, state.phase, detail)

    def _conditions(self, name: str, now: datetime) -> None:
        task_conditions(self.tasks[name], now, GENERATION)

    def _cancel_all(self) -> None:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)  # type: ignore[attr-defined]
        deadline = time.monotonic() + self.options.policy.deadline_grace_seconds
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(self.options.poll_seconds)
        for child in list(self.children.values()):
            os.killpg(child.proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            child.proc.wait()  # type: ignore[attr-defined]
        self._reap()
        now = utcnow()
        for name, state in self.tasks.items():
            if state.phase in ("Pending", "Running"):
                end_without_attempt(state, "Cancelled", "Cancelled", "the run was interrupted", now)
                self._conditions(name, now)
                self.progress.event(name, "Cancelled", "")
        self.admitted.clear()

    # -- files ---------------------------------------------------------------------------------

    def _registry(self) -> Path:
        return self.state_dir / "agents"

    def _repo(self):
        return self.run.spec.repo.model_copy(update={"url": self.url})

    def _verifier(self) -> LocalVerifier:
        """spec.merge.verify runs like an agent: in the sandbox when there is one, seeing no credentials,
        no key, neither braid's state nor its cache, nor the remote when it is a local path."""
        hidden = [Path.home(), self.state_dir, self.cache_root]
        hidden += [p.absolute() for p in (self.options.credentials_dir, self.options.api_key_file) if p is not None]
        if self.url.startswith(("/", "file://")):
            hidden.append(Path(self.url.removeprefix("file://")))
        bwrap = find_sandbox() if self.sandboxed else None
        return LocalVerifier(self.state_dir / "verify", bwrap, tuple(hidden),
                             shared=tuple(p.absolute() for p in self.options.shared), interrupted=self._interrupted)

    def _interrupted(self) -> bool:
        if not self.cancelled and (self.state_dir / CANCEL_FILE).exists():
            self.cancelled = True
        return self.cancelled

    def _secrets(self) -> Secrets:
        key = self.env_api_key
        if key is None and self.options.api_key_file is not None:
            with contextlib.suppress(OSError):
                key = self.options.api_key_file.read_text()
        return Secrets.of({"API key": key, "pull request token": self.options.pr_token}).merged(
            Secrets.from_files(credential_files(self.options.credentials_dir)))

    def _auth_env(self) -> dict[str, str]:
        return git_auth_env(self.options.credentials_dir)

    def _save(self) -> None:
        _write_json(self.state_dir / "status.json", self.status.wire())
        _write_json(self.state_dir / "tasks.json", {n: s.wire() for n, s in self.tasks.items()})
        # what braid last pushed to each resolution branch, kept from run to run like the task commits
        records = dict(self.resolution_records)
        for name, spec in self.resolver_specs.items():
            if spec.resolves and self.tasks[name].commit:
                records[spec.resolves] = self.tasks[name].commit
        if records:
            _write_json(self.state_dir / RESOLUTIONS_FILE, records)

    # -- re-runs ---------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Keep a task's earlier success when neither it nor anything it depends on changed or re-runs,
        and its branch still holds the commit it produced; every other task runs (again).

        What braid pushed before is remembered across runs: each task's last pushed commit (so
        a task that runs again resumes its own branch, and only that) and transcript (so its
        conversation goes on), and the integration commit the last merge pushed (so the merge
        may replace it).
        """
        previous = _read_previous(self.state_dir / "tasks.json")
        for name, old in previous.items():
            self._account_unrecorded(name, old)
        records = read_json(self.state_dir / RESOLUTIONS_FILE)
        self.resolution_records = {task: commit for task, commit in (records or {}).items()
                                   if isinstance(commit, str) and re.fullmatch(COMMIT_PATTERN, commit)
                                   } if isinstance(records, dict) else {}
        record = _read_merge_record(self.state_dir / "status.json")
        if record:
            self.run.status = ParallelRunStatus(
                merge=MergeStatus(phase="Pending", branch=self.run.integration_branch, last_pushed=record))
        old_prints = read_json(self.state_dir / "fingerprints.json") or {}
        prints = task_fingerprints(self.run)
        tips: dict[str, str] = {}
        if previous:
            try:
                cache = ObjectCache(self.cache_root).update(self.url, self._auth_env())
                tips = {t.name: cache.rev(f"refs/heads/{self.run.branch_of(t.name)}") or ""
                        for t in self.run.spec.tasks}
            except RepositoryUnreachable:
                tips = {}
        rerun: set[str] = set()
        now = utcnow()
        for name in topological_order(self.nodes):
            task = self.run.spec.task(name)
            old = previous.get(name)
            keep = (old is not None and old.phase == "Succeeded" and bool(old.commit)
                    and tips.get(name) == old.commit and old_prints.get(name) == prints[name]
                    and not any(d in rerun for d in task.depends_on))
            if keep and old is not None:
                kept = old.model_copy(deep=True)
                kept.message = "unchanged since the previous run"
                self.tasks[name] = kept
            else:
                rerun.add(name)
                self.tasks[name] = AgentTaskStatus(phase="Pending", branch=self.run.branch_of(name),
                                                   commit=old.commit if old is not None else None,
                                                   transcript=old.transcript if old is not None else None)
            self._conditions(name, now)
        # the order of the spec, as the status shows it
        self.tasks = {t.name: self.tasks[t.name] for t in self.run.spec.tasks}
        _write_json(self.state_dir / "fingerprints.json", prints)

    def _account_unrecorded(self, name: str, state: AgentTaskStatus) -> None:
        """Results that attempts of a killed `braid run` left behind without being recorded: an
        agent stopped with its run still pushes what it has, and its commit is braid's."""
        for attempt in range(state.usage_attempts + 1, state.attempts + 1):
            add_usage(state, attempt, _read_result(self.state_dir / "tasks" / name / f"result-{attempt}.json"))


def _task_named(event: Event, tasks: dict[str, AgentTaskStatus]) -> str | None:
    """The task a run-level event is about, when its message starts with `task <name>`."""
    words = event.message.split()
    if len(words) > 1 and words[0] == "task" and words[1] in tasks:
        return words[1]
    return None


def task_fingerprints(run: ParallelRun) -> dict[str, str]:
    """What a task's result depends on: its resolved spec (the run's shares aside)."""
    prints: dict[str, str] = {}
    for task in run.spec.tasks:
        spec = task_spec(run, task).wire()
        for owned in ("suspend", "budget", "skip", "lastPushed", "lastTranscript", "spent"):
            spec.pop(owned, None)
        prints[task.name] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return prints


class InvalidRun(ValueError):
    """Bad input found before anything was created (exit code 2)."""


def _looks_like_sha(ref: str) -> bool:
    return 7 <= len(ref) <= 40 and all(c in "0123456789abcdef" for c in ref)


def _read_result(path: Path) -> TaskResult | None:
    try:
        return TaskResult.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _read_merge_record(path: Path) -> str | None:
    """The integration commit the previous run's merge pushed, from its status.json."""
    merge = (read_json(path) or {}).get("merge")
    try:
        return MergeStatus.model_validate(merge).last_pushed if isinstance(merge, dict) else None
    except ValidationError:
        return None


def _read_previous(path: Path) -> dict[str, AgentTaskStatus]:
    out: dict[str, AgentTaskStatus] = {}
    for name, data in (read_json(path) or {}).items():
        try:
            out[name] = AgentTaskStatus.model_validate(data)
        except ValidationError:
            continue
    return out


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
