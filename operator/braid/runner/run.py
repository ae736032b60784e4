"""`braid agent-run`: prepare workspace -> run agent -> commit -> push -> report.

The one entrypoint of an agent pod and of each task in local mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from braid.agents import AgentContext, AgentError, AgentOutcome, ModelAccess, get_agent
from braid.api import (
    MAX_RISK_FILES,
    MAX_RISK_PAIRS,
    MAX_TRANSCRIPT_BYTES,
    TRANSCRIPT_FILE,
    AgentTaskSpec,
    Ended,
    InvalidTranscript,
    RiskFile,
    RiskSeen,
    TaskResult,
    parse_transcript,
    task_branch,
    transcript_ref,
)
from braid.confine import ModelProxy, Placement, Sandbox, SandboxUnavailable, find_sandbox
from braid.confine.limits import Cgroup
from braid.gitops import (
    BranchExists,
    BranchMoved,
    DependencyConflict,
    FileTooLarge,
    GitError,
    MissingRef,
    ObjectCache,
    Prepared,
    Repo,
    RepositoryUnreachable,
    Secrets,
    changed_files,
    commit_all,
    fetch_ref,
    file_commit,
    git_auth_env,
    mark_pushed,
    normalize_url,
    open_workspace,
    prepare_branch,
    push_branch,
    push_ref,
    read_file,
    reset_git_dir,
    scan_outgoing,
)
from braid.gitops.mergetree import branch_conflicts
from braid.gitops.secrets import credential_files

log = logging.getLogger("braid.runner")


@dataclass
class RunnerPaths:
    workdir: Path
    cache_dir: Path
    credentials_dir: Path | None = None
    api_key_file: Path | None = None
    api_key: str | None = None
    """The key itself, when the launcher hands it over on stdin rather than in a file."""
    sandbox: bool = False
    """Run every process the agent starts in a bubblewrap sandbox."""
    hidden: list[Path] = field(default_factory=list)
    """More paths the sandbox hides (the launcher's state directory)."""
    shared: list[Path] = field(default_factory=list)
    """Directories the sandbox lets the agent write besides its working copy."""
    placement: Placement = field(default_factory=Placement)
    """The cgroup the launcher made for this attempt's agent processes, or the rlimit they get instead."""

    @property
    def conversation(self) -> Path:
        """Where a local run keeps the task's conversation: beside the working copy, which the sandbox hides."""
        return self.workdir.parent / f".{self.workdir.name}.transcript.json"


def commit_message(spec: AgentTaskSpec, outcome: AgentOutcome) -> str:
    body = (outcome.summary or "").strip()
    if not outcome.ok:
        body = (body + "\n\n" if body else "") + f"Partial work: {outcome.reason}: {outcome.message or ''}".strip()
    trailers = f"Braid-Run: {spec.run}\nBraid-Task: {spec.task}"
    return f"{spec.task}\n\n{body}\n\n{trailers}\n" if body else f"{spec.task}\n\n{trailers}\n"


def read_api_key(paths: RunnerPaths) -> str | None:
    """The model API key braid holds for this task, or None. Raises AgentError when a given file is unusable."""
    if paths.api_key_file is None:
        return (paths.api_key or "").strip() or None
    try:
        key = paths.api_key_file.read_text().strip()
    except OSError as exc:
        raise AgentError("MissingAPIKey", f"cannot read the API key file {paths.api_key_file}: {exc.strerror}") from None
    if not key:
        raise AgentError("MissingAPIKey", f"the API key file {paths.api_key_file} is empty")
    return key


def model_upstream(agent_env: dict[str, str] | None) -> str | None:
    """Where the proxy forwards a task's model requests: agent.env's ANTHROPIC_BASE_URL, braid's, or the API."""
    return (agent_env or {}).get("ANTHROPIC_BASE_URL") or os.environ.get("ANTHROPIC_BASE_URL") or None


@contextlib.contextmanager
def model_access(key: str, upstream: str | None, secrets: Secrets) -> Iterator[ModelAccess]:
    """A key-injecting proxy for one task, for as long as the agent runs; the key stays in this process."""
    with ModelProxy(key, leaks=secrets.found_in) as proxy:
        yield ModelAccess(proxy.url, proxy.route(upstream))


def _sandbox(spec: AgentTaskSpec, paths: RunnerPaths, cache: Repo, url: str) -> Sandbox | None:
    if not paths.sandbox:
        return None
    bwrap = find_sandbox()
    hidden = [Path.home(), paths.workdir.parent, paths.cache_dir, *paths.hidden]
    hidden += [p for p in (paths.credentials_dir, paths.api_key_file) if p is not None]
    remote = Path(url[len("file://"):]) if url.startswith("file://") else Path(url) if url.startswith("/") else None
    if remote is not None:
        hidden.append(remote)
    readonly = [cache.path / "objects"]
    command = (spec.agent.command or [None])[0] if spec.agent.effective_backend == "command" else None
    if command and os.path.isabs(command):
        # the agent CLI itself stays reachable (read-only) when it is installed under a hidden directory
        readonly += [Path(command).parent.parent, Path(os.path.realpath(command)).parent.parent]
    return Sandbox(bwrap, paths.workdir, readonly=tuple(readonly), hidden=tuple(hidden), shared=tuple(paths.shared))


@dataclass
class TranscriptLease:
    """The task's transcript ref, which this attempt may replace: what it held when fetched ('' none)."""

    ref: str
    lease: str


@dataclass
class Ready:
    """A prepared working copy and what publishing its work needs."""

    repo: Repo
    cache: Repo
    url: str
    prepared: Prepared
    auth: dict[str, str]
    transcript: TranscriptLease | None = None
    """None: the task's conversation is not saved (its backend keeps none, or the ref is not braid's)."""


def keeps_conversation(spec: AgentTaskSpec) -> bool:
    """The backends whose conversation braid saves with the work and continues in a later attempt."""
    return spec.agent.effective_backend == "anthropic"


def _failure(spec: AgentTaskSpec, reason: str, message: str, started: float) -> TaskResult:
    return TaskResult(run=spec.run, task=spec.task, phase="Failed", branch=spec.branch, reason=reason,
                      message=message, duration_seconds=round(time.monotonic() - started, 3))


def prepare(spec: AgentTaskSpec, paths: RunnerPaths, started: float, conversation: Path | None = None) -> Ready | TaskResult:
    """Fetch, make the working copy and check out the task's branch; a TaskResult when that fails.

    With `conversation`, the conversation braid saved with the work the attempt resumes is
    written there for the agent to continue (and nothing is there otherwise).
    """
    if conversation is not None:
        conversation.unlink(missing_ok=True)
    auth = git_auth_env(paths.credentials_dir)
    url = normalize_url(spec.repo.url)
    repo = None
    try:
        log.info("fetching %s into the object cache", url)
        cache = ObjectCache(paths.cache_dir).update(url, auth)
        repo = open_workspace(paths.workdir, cache, url)
        prepared = prepare_branch(repo, spec.branch, spec.repo.base_ref, spec.dependency_branches,
                                  last_pushed=spec.last_pushed)
    except (RepositoryUnreachable, MissingRef, DependencyConflict, BranchExists, GitError) as exc:
        reason = {
            RepositoryUnreachable: "RepositoryUnreachable",
            MissingRef: "MissingRef",
            DependencyConflict: "DependencyConflict",
            BranchExists: "BranchExists",
        }.get(type(exc), "GitFailed")
        log.error("%s: %s", reason, exc)
        if repo is not None:
            mark_pushed(paths.workdir)  # a fresh copy no agent ran in: nothing to keep
        return _failure(spec, reason, str(exc), started)
    log.info(
        "workspace ready on %s at %s%s%s", spec.branch, prepared.start[:12],
        " (resumed from the pushed branch)" if prepared.resumed else "",
        f", with {', '.join(prepared.merged_dependencies)} merged" if prepared.merged_dependencies else "",
    )
    transcript = None
    if conversation is not None and keeps_conversation(spec):
        transcript = fetch_conversation(spec, repo, auth, prepared, conversation)
    return Ready(repo, cache, url, prepared, auth, transcript)


def fetch_conversation(spec: AgentTaskSpec, repo: Repo, auth: dict[str, str], prepared: Prepared,
                       path: Path) -> TranscriptLease | None:
    """Fetch the task's transcript ref and, when braid wrote it and it goes with the branch this attempt
    resumes, write the conversation to `path`. Whether (and on what lease) the attempt may replace it.

    The ref is braid's only while it holds exactly the commit braid last pushed there
    (spec.lastTranscript), or does not exist; any other is neither read nor overwritten.
    """
    ref = transcript_ref(spec.run, spec.task)
    try:
        tip = fetch_ref(repo, ref, auth)
    except GitError as exc:
        log.warning("cannot fetch %s (%s): the conversation is neither continued nor saved", ref, exc)
        return None
    if tip is None:
        return TranscriptLease(ref, "")
    if tip != spec.last_transcript:
        recorded = f"not at {spec.last_transcript[:12]} where braid last pushed it" if spec.last_transcript else \
            "and braid did not push it"
        log.warning("%s is at %s, %s: braid neither continues nor replaces it (delete it to have this task's "
                    "conversation saved again)", ref, tip[:12], recorded)
        return None
    lease = TranscriptLease(ref, tip)
    try:
        data = read_file(repo, tip, TRANSCRIPT_FILE, MAX_TRANSCRIPT_BYTES)
        if data is None:
            raise InvalidTranscript(f"its commit has no {TRANSCRIPT_FILE}")
        saved = parse_transcript(data)
    except (InvalidTranscript, FileTooLarge) as exc:
        log.warning("the conversation on %s is not continued: %s", ref, exc)
        return lease
    if not prepared.resumed or saved.commit != prepared.lease:
        log.info("the conversation on %s is not continued: it was saved with commit %s, the task branch %s", ref,
                 (saved.commit or "?")[:12], f"is at {prepared.lease[:12]}" if prepared.resumed else "starts afresh")
        return lease
    _write_bytes(path, saved.dumps())
    log.info("the conversation saved on %s (%d messages) is there to be continued", ref, len(saved.messages))
    return lease


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def save_conversation(spec: AgentTaskSpec, ready: Ready, path: Path, commit: str, outcome: AgentOutcome,
                      secrets: Secrets) -> tuple[str | None, str | None]:
    """Push the conversation at `path` to the task's transcript ref, with the work at `commit`.

    (the transcript commit pushed, or None; a note for the task's message, or None). What the
    agent left is checked as any read-back conversation is, and scanned for secrets like the
    work: a conversation holding one is not pushed.
    """
    lease = ready.transcript
    if lease is None:
        return None, None
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TRANSCRIPT_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        log.warning("the conversation is not saved: cannot read it: %s", exc.strerror)
        return None, None
    try:
        saved = parse_transcript(data)
    except InvalidTranscript as exc:
        log.warning("the conversation is not saved: %s", exc)
        return None, None
    ended = Ended(ok=outcome.ok, reason=(outcome.reason or "")[:128] or None,
                  message=(outcome.message or "")[:4096] or None)
    saved = saved.model_copy(update={"commit": commit, "ended": ended})
    text = saved.dumps().decode()
    if len(text) > MAX_TRANSCRIPT_BYTES:
        log.warning("the conversation is not saved: it is larger than %d bytes", MAX_TRANSCRIPT_BYTES)
        return None, None
    repo = ready.repo
    message = (f"{spec.task}: conversation\n\nThe conversation of task {spec.task}, saved with {commit[:12]}.\n\n"
               f"Braid-Run: {spec.run}\nBraid-Task: {spec.task}\n")
    try:
        saved_commit = file_commit(repo, TRANSCRIPT_FILE, text, message)
        leak = scan_outgoing(repo, saved_commit, secrets)
        if leak is not None:
            log.error("the conversation is not saved: %s", leak)
            return None, f"the conversation was not saved: {leak}"
        push_ref(repo, lease.ref, saved_commit, lease.lease, ready.auth)
    except BranchMoved:
        log.warning("%s changed on the remote while the task ran: not overwriting it; the conversation is not saved",
                    lease.ref)
        return None, None
    except GitError as exc:
        log.warning("the conversation is not saved: %s", exc)
        return None, None
    log.info("conversation saved on %s at %s", lease.ref, saved_commit[:12])
    return saved_commit, None


RISK_CHECK_SECONDS = 30.0
"""How long the early conflict check may hold up the task's result; past it, the merge still finds every conflict."""


def bounded_conflict_risk(spec: AgentTaskSpec, ready: Ready, commit: str,
                          seconds: float = RISK_CHECK_SECONDS) -> tuple[list[RiskSeen], bool]:
    """conflict_risk, given up after `seconds` (a fetch that hangs must not keep the pushed work from being reported)."""
    found: list[tuple[list[RiskSeen], bool]] = []
    worker = threading.Thread(target=lambda: found.append(conflict_risk(spec, ready, commit)), daemon=True,
                              name="conflict-risk")
    worker.start()
    worker.join(seconds)
    if not found:
        log.warning("the check of the other task branches for conflicts took longer than %gs; left out", seconds)
        return [], False
    return found[0]


def conflict_risk(spec: AgentTaskSpec, ready: Ready, commit: str) -> tuple[list[RiskSeen], bool]:
    """The run's other task branches that `commit` (just pushed) conflicts with, and whether some were left out.

    The branches braid/<run>/tasks/* are fetched fresh and each merged with the commit by
    git merge-tree; the run's status decides which pairs count (plan.risk). A failing check
    only costs the early warning: it is logged, and the merge still finds every conflict.
    """
    prefix = task_branch(spec.run, "")
    own = spec.branch[len(prefix):]
    try:
        found, truncated = branch_conflicts(ready.repo, prefix, own, commit, ready.auth, limit=MAX_RISK_PAIRS)
    except GitError as exc:
        log.warning("could not check the other task branches for conflicts: %s", exc)
        return [], False
    seen = []
    for name, oid, files in found:
        truncated = truncated or len(files) > MAX_RISK_FILES
        seen.append(RiskSeen(task=name, commit=oid,
                             files=[RiskFile(path=f.path, kind=f.kind) for f in files[:MAX_RISK_FILES]]))
        log.warning("conflict risk: this task's branch conflicts with task %s (at %s) in %s", name, oid[:12],
                    ", ".join(f.path for f in files[:MAX_RISK_FILES]))
    return seen, truncated


def held_secrets(key: str | None, paths: RunnerPaths) -> Secrets:
    """Every secret this runner holds: what a push must never carry."""
    return Secrets.of({"API key": key}).merged(Secrets.from_files(credential_files(paths.credentials_dir)))


def run_task(spec: AgentTaskSpec, paths: RunnerPaths, cancel: threading.Event | None = None) -> TaskResult:
    """The whole task in one process (local mode): prepare, run the agent, publish its work."""
    cancel = cancel or threading.Event()
    started = time.monotonic()
    ready = prepare(spec, paths, started, paths.conversation)
    if isinstance(ready, TaskResult):
        return ready
    try:
        key = read_api_key(paths)
        sandbox = _sandbox(spec, paths, ready.cache, ready.url)
    except (AgentError, SandboxUnavailable) as exc:
        mark_pushed(paths.workdir)
        return _failure(spec, getattr(exc, "reason", "SandboxUnavailable"), str(exc), started)
    secrets = held_secrets(key, paths)
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(model_access(key, model_upstream(spec.agent.env), secrets)) if key else None
        outcome = run_agent(spec, paths.workdir, agent_time(spec, started), cancel, model, secrets.redact, sandbox,
                            paths.placement, transcript=paths.conversation)
    outcome = memory_verdict(spec, outcome, paths.placement)
    return publish(spec, paths, ready, outcome, secrets, started, paths.conversation)


def memory_verdict(spec: AgentTaskSpec, outcome: AgentOutcome, placement: Placement) -> AgentOutcome:
    """An agent that failed after the kernel killed it for its cgroup's memory limit ends OOMKilled,
    as an agent container on the cluster would; its work is still committed and pushed."""
    if outcome.ok or outcome.reason in ("Cancelled", "Timeout") or not placement.cgroups:
        return outcome
    cgroup = Cgroup.attach(placement.cgroups)
    if not cgroup.out_of_memory(outcome.killed):
        return outcome
    limit = ((spec.resources.limits or {}) if spec.resources else {}).get("memory")
    message = (f"the agent ran out of memory: the kernel killed it at its limit{f' ({limit})' if limit else ''}; "
               "raise the task's resources.limits.memory")
    log.error("OOMKilled: %s", message)
    return AgentOutcome(False, summary=outcome.summary, usage=outcome.usage, reason="OOMKilled", message=message,
                        killed=outcome.killed)


def agent_time(spec: AgentTaskSpec, started: float) -> float:
    """The task's deadline counts from its start; the agent gets what remains, minus a margin to
    commit and push, so a slow fetch does not cost the work at the end."""
    margin = min(30.0, spec.timeout_seconds * 0.1)
    return max(1.0, spec.timeout_seconds - (time.monotonic() - started) - margin)


def run_agent(spec: AgentTaskSpec, workdir: Path, timeout: float, cancel: threading.Event, model: ModelAccess | None,
              redact: Callable[[str], str] = lambda text: text, sandbox: Sandbox | None = None,
              placement: Placement | None = None, transcript: Path | None = None) -> AgentOutcome:
    ctx = AgentContext(
        run=spec.run,
        task=spec.task,
        prompt=spec.prompt,
        workdir=workdir,
        agent=spec.agent,
        timeout_seconds=timeout,
        paths=spec.paths,
        depends_on=spec.depends_on,
        budget=spec.budget,
        spent=spec.spent,
        transcript=transcript if keeps_conversation(spec) else None,
        model=model,
        redact=redact,
        sandbox=sandbox,
        placement=placement or Placement(),
        log=logging.getLogger("braid.agent"),
        cancel=cancel,
    )
    try:
        outcome = get_agent(spec.agent.effective_backend).run(ctx)
    except AgentError as exc:
        outcome = AgentOutcome(False, reason=exc.reason, message=str(exc))
    log.info("agent finished: %s%s", "ok" if outcome.ok else outcome.reason,
             f" ({outcome.message})" if outcome.message else "")
    return outcome


def publish(spec: AgentTaskSpec, paths: RunnerPaths, ready: Ready, outcome: AgentOutcome, secrets: Secrets,
            started: float, conversation: Path | None = None) -> TaskResult:
    """Commit the agent's work (whatever its outcome, so a retry resumes from it), check it, push it,
    and with it the agent's conversation at `conversation`, for the next attempt to continue."""
    result = TaskResult(run=spec.run, task=spec.task, phase="Failed", branch=spec.branch)
    repo = ready.repo
    try:
        planted = reset_git_dir(repo, ready.cache, ready.url)
        if planted:
            log.warning("the agent changed .git (%s): braid's own settings are back before it commits",
                        ", ".join(planted))
        committed = commit_all(repo, commit_message(spec, outcome))
        if not committed.made:
            log.info("the agent changed nothing: nothing to commit")
        leak = scan_outgoing(repo, repo.out("rev-parse", "HEAD"), secrets)
        if leak is not None:
            outcome = AgentOutcome(False, usage=outcome.usage, reason="SecretInOutput",
                                   message=f"not pushed: {leak}; the work stays in {paths.workdir}")
            log.error("%s", outcome.message)
        else:
            result.commit = push_branch(repo, spec.branch, ready.prepared.lease, ready.auth)
            mark_pushed(paths.workdir)
            result.changed_files = changed_files(repo, ready.prepared.start)
            notes = []
            if committed.left_out:
                notes.append(f"left out of the commit (git refuses these paths): {', '.join(committed.left_out[:20])}")
            if conversation is not None:
                try:
                    result.transcript, note = save_conversation(spec, ready, conversation, result.commit, outcome,
                                                                secrets)
                except Exception:  # the work is pushed: what braid records of it must reach the launcher
                    log.exception("the conversation is not saved")
                    note = None
                notes += [note] if note else []
            for note in notes:
                outcome.message = f"{outcome.message}; {note}" if outcome.message else note
    except (GitError, BranchMoved) as exc:
        outcome = AgentOutcome(False, usage=outcome.usage, reason="PushFailed", message=str(exc))
        log.error("push failed: %s", exc)

    result.usage = outcome.usage
    result.reason, result.message = outcome.reason, outcome.message
    if outcome.ok:
        result.phase = "Succeeded"
        if result.commit:
            result.conflict_risk, result.conflict_risk_truncated = bounded_conflict_risk(spec, ready, result.commit)
    elif outcome.reason == "Cancelled":
        result.phase = "Cancelled"
    result.duration_seconds = round(time.monotonic() - started, 3)
    return result


def install_cancel_handlers() -> threading.Event:
    """SIGTERM (pod deletion, local cancel) and SIGINT set one event the agent watches."""
    cancel = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        log.warning("received %s: cancelling the agent, keeping its work", signal.Signals(signum).name)
        cancel.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return cancel
