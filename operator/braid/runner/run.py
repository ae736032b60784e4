"""`braid agent-run`: prepare workspace -> run agent -> commit -> push -> report.

The one entrypoint of an agent pod and of each task in local mode.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from braid.agents import AgentContext, AgentError, AgentOutcome, get_agent
from braid.api import AgentTaskSpec, TaskResult
from braid.gitops import (
    BranchExists,
    BranchMoved,
    DependencyConflict,
    GitError,
    MissingRef,
    ObjectCache,
    RepositoryUnreachable,
    changed_files,
    commit_all,
    git_auth_env,
    mark_pushed,
    normalize_url,
    open_workspace,
    prepare_branch,
    push_branch,
)

log = logging.getLogger("braid.runner")


@dataclass
class RunnerPaths:
    workdir: Path
    cache_dir: Path
    credentials_dir: Path | None = None
    api_key_file: Path | None = None


def commit_message(spec: AgentTaskSpec, outcome: AgentOutcome) -> str:
    body = (outcome.summary or "").strip()
    if not outcome.ok:
        body = (body + "\n\n" if body else "") + f"Partial work: {outcome.reason}: {outcome.message or ''}".strip()
    trailers = f"Braid-Run: {spec.run}\nBraid-Task: {spec.task}"
    return f"{spec.task}\n\n{body}\n\n{trailers}\n" if body else f"{spec.task}\n\n{trailers}\n"


def run_task(spec: AgentTaskSpec, paths: RunnerPaths, cancel: threading.Event | None = None) -> TaskResult:
    cancel = cancel or threading.Event()
    started = time.monotonic()
    result = TaskResult(run=spec.run, task=spec.task, phase="Failed", branch=spec.branch)
    env = git_auth_env(paths.credentials_dir)
    url = normalize_url(spec.repo.url)

    repo = None
    try:
        log.info("fetching %s into the object cache", url)
        cache = ObjectCache(paths.cache_dir).update(url, env)
        repo = open_workspace(paths.workdir, cache, url, env)
        prepared = prepare_branch(repo, spec.branch, spec.repo.base_ref, spec.dependency_branches,
                                  last_pushed=spec.last_pushed)
    except (RepositoryUnreachable, MissingRef, DependencyConflict, BranchExists, GitError) as exc:
        reason = {
            RepositoryUnreachable: "RepositoryUnreachable",
            MissingRef: "MissingRef",
            DependencyConflict: "DependencyConflict",
            BranchExists: "BranchExists",
        }.get(type(exc), "GitFailed")
        result.reason, result.message = reason, str(exc)
        log.error("%s: %s", reason, exc)
        result.duration_seconds = round(time.monotonic() - started, 3)
        if repo is not None:
            mark_pushed(paths.workdir)  # a fresh copy no agent ran in: nothing to keep
        return result

    log.info(
        "workspace ready on %s at %s%s%s", spec.branch, prepared.start[:12],
        " (resumed from the pushed branch)" if prepared.resumed else "",
        f", with {', '.join(prepared.merged_dependencies)} merged" if prepared.merged_dependencies else "",
    )
    # The task's deadline counts from its start; leave the agent what remains, minus a
    # margin to commit and push, so a slow fetch does not cost the work at the end.
    elapsed = time.monotonic() - started
    margin = min(30.0, spec.timeout_seconds * 0.1)
    ctx = AgentContext(
        run=spec.run,
        task=spec.task,
        prompt=spec.prompt,
        workdir=paths.workdir,
        agent=spec.agent,
        timeout_seconds=max(1.0, spec.timeout_seconds - elapsed - margin),
        paths=spec.paths,
        depends_on=spec.depends_on,
        budget=spec.budget,
        api_key_file=paths.api_key_file,
        log=logging.getLogger("braid.agent"),
        cancel=cancel,
    )
    try:
        outcome = get_agent(spec.agent.effective_backend).run(ctx)
    except AgentError as exc:
        outcome = AgentOutcome(False, reason=exc.reason, message=str(exc))
    log.info("agent finished: %s%s", "ok" if outcome.ok else outcome.reason, f" ({outcome.message})" if
             outcome.message else "")

    # Work is kept whatever the outcome, so a retry or a re-run resumes from it.
    try:
        commit_all(repo, commit_message(spec, outcome))
        result.commit = push_branch(repo, spec.branch, prepared.lease)
        mark_pushed(paths.workdir)
        result.changed_files = changed_files(repo, prepared.start)
    except (GitError, BranchMoved) as exc:
        outcome = AgentOutcome(False, usage=outcome.usage, reason="PushFailed", message=str(exc))
        log.error("push failed: %s", exc)

    result.usage = outcome.usage
    result.reason, result.message = outcome.reason, outcome.message
    if outcome.ok:
        result.phase = "Succeeded"
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
