"""One task as three containers of a pod, so agent code never shares a container with a secret.

- `prepare` (an init container, with the git credentials): fetches, makes the working copy,
  checks out the task's branch, and leaves what publishing needs in the state directory,
  which only braid's containers mount; the conversation saved with the work it resumes
  (anthropic backend) goes to the handoff directory for the agent to continue.
- `agent` (the agent image, no secret mounted): runs the agent in the working copy, whose
  .git it sees read-only, and reaches the model through the proxy on loopback with a
  placeholder key. It writes its outcome, and its conversation as it goes, to the handoff directory.
- `publish` (braid's runner, with the git credentials and the API key): serves the
  key-injecting proxy, waits for the agent's outcome (or the deadline, or SIGTERM),
  then commits, scans and pushes exactly as a local run does (the conversation in the handoff
  directory included, checked like any read-back one), and reports the result.

The agent container can write the handoff directory, so what it reports about itself
(its summary and usage) is only as trustworthy as the agent; what was pushed, and where,
is decided by the publish container alone.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

from pydantic import ValidationError

from braid.agents import AgentOutcome, ModelAccess
from braid.api import AgentTaskSpec, TaskResult, Usage
from braid.confine import ModelProxy
from braid.gitops import ObjectCache, Prepared, Repo, git_auth_env, normalize_url

from .run import (
    Ready,
    RunnerPaths,
    TranscriptLease,
    agent_time,
    held_secrets,
    model_upstream,
    prepare,
    publish,
    read_api_key,
    run_agent,
)

log = logging.getLogger("braid.runner")

PREPARED = "prepared.json"
READY = "ready.json"
OUTCOME = "outcome.json"
CONVERSATION = "transcript.json"
MODEL_PROXY_ENV = "BRAID_MODEL_PROXY"
MODEL_KEY_ENV = "BRAID_MODEL_KEY"
MAX_OUTCOME = 1024 * 1024


def _write(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def prepare_phase(spec: AgentTaskSpec, paths: RunnerPaths, state: Path, handoff: Path) -> TaskResult | None:
    """The init container. A failure is recorded for the publish container to report; None on success."""
    started = time.monotonic()
    ready = prepare(spec, paths, started, handoff / CONVERSATION)
    if isinstance(ready, TaskResult):
        _write(state / PREPARED, {"result": ready.wire()})
        return ready
    _write(state / PREPARED, {"startedAt": time.time(), "prepared": asdict(ready.prepared),
                              "transcript": asdict(ready.transcript) if ready.transcript else None})
    _write(handoff / READY, {"startedAt": time.time()})
    return None


def agent_phase(spec: AgentTaskSpec, workdir: Path, handoff: Path, cancel: threading.Event) -> AgentOutcome | None:
    """The agent container: run the agent, leave its outcome. None when preparing failed (nothing to do)."""
    try:
        began = float(json.loads((handoff / READY).read_text())["startedAt"])
    except (OSError, ValueError, KeyError, TypeError):
        log.info("the workspace was not prepared: nothing to run")
        return None
    url, key = os.environ.get(MODEL_PROXY_ENV), os.environ.get(MODEL_KEY_ENV)
    model = ModelAccess(url, key) if url and key else None
    started = time.monotonic() - max(0.0, time.time() - began)
    outcome = run_agent(spec, workdir, agent_time(spec, started), cancel, model, transcript=handoff / CONVERSATION)
    _write(handoff / OUTCOME, {"ok": outcome.ok, "summary": outcome.summary, "usage": outcome.usage.wire(),
                               "reason": outcome.reason, "message": outcome.message})
    return outcome


def _read_outcome(path: Path) -> AgentOutcome | None:
    try:
        if path.stat().st_size > MAX_OUTCOME:
            return AgentOutcome(False, reason="AgentFailed", message="the agent container's outcome is too large")
        data = json.loads(path.read_text())
        return AgentOutcome(bool(data["ok"]), summary=str(data.get("summary") or "")[:20000],
                            usage=Usage.model_validate(data.get("usage") or {}),
                            reason=str(data["reason"])[:100] if data.get("reason") else None,
                            message=str(data["message"])[:2000] if data.get("message") else None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return AgentOutcome(False, reason="AgentFailed", message="the agent container left an unreadable outcome")


def publish_phase(spec: AgentTaskSpec, paths: RunnerPaths, state: Path, handoff: Path, cancel: threading.Event,
                  listen: tuple[str, int], poll: float = 0.5) -> TaskResult:
    """The publish container: serve the model proxy while the agent runs, then publish its work."""
    try:
        recorded = json.loads((state / PREPARED).read_text())
    except (OSError, ValueError):
        return TaskResult(run=spec.run, task=spec.task, phase="Failed", branch=spec.branch, reason="Crashed",
                          message="the prepare step left no record")
    if "result" in recorded:
        return TaskResult.model_validate(recorded["result"])
    prepared = Prepared(**recorded["prepared"])
    started = time.monotonic() - max(0.0, time.time() - float(recorded["startedAt"]))
    url = normalize_url(spec.repo.url)
    ready_repo = Repo(paths.workdir)
    cache = Repo(ObjectCache(paths.cache_dir).path_for(url))
    lease = recorded.get("transcript")
    ready = Ready(ready_repo, cache, url, prepared, git_auth_env(paths.credentials_dir),
                  TranscriptLease(**lease) if lease else None)
    key = read_api_key(paths)
    secrets = held_secrets(key, paths)
    proxy = None
    if key:
        proxy = ModelProxy(key, leaks=secrets.found_in, host=listen[0], port=listen[1])
        proxy.route(model_upstream(spec.agent.env), token=os.environ.get(MODEL_KEY_ENV))
        proxy.__enter__()
    try:
        deadline = started + spec.timeout_seconds - min(30.0, spec.timeout_seconds * 0.1)
        outcome = None
        while outcome is None and not cancel.is_set() and time.monotonic() < deadline:
            outcome = _read_outcome(handoff / OUTCOME)
            if outcome is None:
                cancel.wait(poll)
        if outcome is None:
            reason = "Cancelled" if cancel.is_set() else "Timeout"
            outcome = AgentOutcome(False, reason=reason, message="the agent did not finish in time" if
                                   reason == "Timeout" else "cancelled")
    finally:
        if proxy is not None:
            proxy.__exit__(None, None, None)
    return publish(spec, paths, ready, outcome, secrets, started, handoff / CONVERSATION)
