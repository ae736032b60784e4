"""The `command` backend: any agent CLI, run without a shell, prompt on stdin.

What the CLI spent comes from what it reports (see usage.py): a file it may write at
$BRAID_USAGE_FILE, or its structured output (Claude Code's `--output-format json` or
`stream-json`). It is followed while the CLI runs, and the CLI is stopped when the task's
share of the budget is spent, as on a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from braid.api import Usage
from braid.plan import BUDGET_EXCEEDED, share_spent

from .base import AgentContext, AgentError, AgentOutcome
from .usage import MAX_LINE, USAGE_FILE_ENV, Lines, OutputUsage, UsageReport, read_usage_file, report_usage

# What a CLI needs to find itself and behave; nothing else of braid's environment
# (which may hold credentials) is passed on.
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
_TAIL = 4000
FILE_POLL_SECONDS = 0.5


def minimal_env(ctx: AgentContext) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["TERM"] = "dumb"
    env["BRAID_RUN"] = ctx.run
    env["BRAID_TASK"] = ctx.task
    env["BRAID_WORKDIR"] = str(ctx.workdir)
    # what the prompt on stdin does not say: where the task works, what it builds on (JSON arrays)
    env["BRAID_PATHS"] = json.dumps(list(ctx.paths))
    env["BRAID_DEPENDS_ON"] = json.dumps(list(ctx.depends_on))
    env.update(ctx.agent.env or {})
    if ctx.model is not None:
        env["ANTHROPIC_BASE_URL"] = ctx.model.url
        env["ANTHROPIC_API_KEY"] = ctx.model.key
    return env


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(fh) -> str:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - _TAIL))
    return fh.read().decode(errors="replace").strip()


class CommandAgent:
    def run(self, ctx: AgentContext) -> AgentOutcome:
        argv = list(ctx.agent.command or [])
        if not argv:
            raise AgentError("InvalidAgent", "agent.command: backend command needs a command (argv list)")
        with contextlib.ExitStack() as stack:
            out, err, stdin = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(3))
            # outside the working copy (it would be committed), writable in the sandbox, read by this process
            usage_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="braid-usage-",
                                                                              ignore_cleanup_errors=True)))
            stdin.write(ctx.prompt.encode())
            stdin.seek(0)
            env = minimal_env(ctx)
            env[USAGE_FILE_ENV] = str(usage_dir / "usage.json")
            run_argv = argv
            if ctx.sandbox is not None:
                sandbox = dataclasses.replace(ctx.sandbox, shared=(*ctx.sandbox.shared, usage_dir))
                run_argv, env = sandbox.wrap(argv, env), {"PATH": env.get("PATH", "/usr/bin:/bin")}
            try:
                proc = subprocess.Popen(
                    run_argv,
                    cwd=ctx.workdir,
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    env=env,
                    start_new_session=True,
                    preexec_fn=ctx.placement.preexec(),
                )
            except OSError as exc:
                raise AgentError("AgentFailed", f"agent.command: cannot run {argv[0]!r}: {exc.strerror}") from None
            except subprocess.SubprocessError:
                raise AgentError("AgentFailed", "cannot put the agent into its cgroup or under its limits") from None
            return _Watch(ctx, argv[0], proc, out, usage_dir / "usage.json").run(err)


class _Watch:
    """One running CLI: its deadline, cancellation, and what it reports it spent, against its budget share."""

    def __init__(self, ctx: AgentContext, name: str, proc: subprocess.Popen[bytes], out: IO[bytes], usage_file: Path):
        self.ctx, self.name, self.proc, self.out, self.usage_file = ctx, name, proc, out, usage_file
        self.output = OutputUsage()
        self.lines = Lines(out.fileno())
        self.report: UsageReport | None = None
        self._file_seen: tuple[int, int, int] | None = None
        self._file_checked = 0.0

    def run(self, err: IO[bytes]) -> AgentOutcome:
        ctx, proc = self.ctx, self.proc
        deadline = time.monotonic() + ctx.timeout_seconds
        outcome: AgentOutcome | None = None
        while proc.poll() is None:
            if ctx.cancel.wait(0.1):
                _kill(proc)
                outcome = AgentOutcome(False, reason="Cancelled", message="cancelled")
            elif time.monotonic() > deadline:
                _kill(proc)
                outcome = AgentOutcome(
                    False, reason="Timeout", message=f"{self.name} timed out after {ctx.timeout_seconds:g}s"
                )
            elif (over := self._share_spent()) is not None:
                _kill(proc)
                outcome = AgentOutcome(False, reason=BUDGET_EXCEEDED, message=f"{self.name} stopped: {over}")
        usage = self._final()
        stdout, stderr = _tail(self.out), _tail(err)
        if stderr:
            ctx.log.info("agent stderr (tail):\n%s", stderr)
        summary = self.output.summary() or stdout
        if usage is not None:
            self._log(usage)
        usage = usage or Usage()
        if outcome is not None:
            outcome.summary, outcome.usage = summary, usage
            return outcome
        if proc.returncode != 0:
            last = self.output.failure() or ((stderr or stdout).splitlines()[-1:] or [""])[0]
            return AgentOutcome(
                False,
                summary=summary,
                usage=usage,
                reason="AgentFailed",
                message=f"{self.name} exited with code {proc.returncode}: {last[:300]}",
                # bwrap reports a child killed by signal N as exit code 128 + N
                killed=proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL),
            )
        return AgentOutcome(True, summary=summary, usage=usage)

    def _share_spent(self) -> str | None:
        """Why the CLI must stop for its budget share, or None. A CLI that printed its result has
        finished: what it spent counts against the run's budget, but it is not stopped."""
        usage = self._follow()
        return None if self.output.result is not None else share_spent(usage, self.ctx.budget)

    def _model(self) -> str | None:
        """The model to price tokens at when the agent names none: agent.model if set, else what its output says."""
        return self.ctx.agent.model or self.output.model

    def _follow(self) -> Usage:
        """What the agent has spent so far, from new output lines and a changed usage file."""
        for line in self.lines.read():
            self.output.feed(line)
        now = time.monotonic()
        if now - self._file_checked >= FILE_POLL_SECONDS:
            self._file_checked = now
            try:
                info = os.stat(self.usage_file, follow_symlinks=False)
                seen = (info.st_mtime_ns, info.st_size, info.st_ino)
            except OSError:
                seen = None
            if seen is not None and seen != self._file_seen:
                self._file_seen = seen
                # while it runs, a file caught half-written is simply read again when it changes
                self.report = read_usage_file(self.usage_file)[0] or self.report
        return self._current() or Usage()

    def _current(self) -> Usage | None:
        if self.report is not None:
            return report_usage(self.report, self._model(), self.ctx.agent.pricing)
        return self.output.usage(self._model(), self.ctx.agent.pricing)

    def _final(self) -> Usage | None:
        """What the agent spent, once it ended: the usage file if it wrote a valid one, else its output."""
        for line in self.lines.rest():
            self.output.feed(line)
        if not self.output.recognised and os.fstat(self.out.fileno()).st_size <= MAX_LINE:
            # a single JSON object printed over several lines
            self.output.feed(b" ".join(os.pread(self.out.fileno(), MAX_LINE, 0).splitlines()))
        self.report, problem = read_usage_file(self.usage_file)
        if problem:
            self.ctx.log.warning("%s %s: ignored", USAGE_FILE_ENV, problem)
        return self._current()

    def _log(self, usage: Usage) -> None:
        source = USAGE_FILE_ENV if self.report is not None else "its output"
        self.ctx.log.info(
            "agent usage (from %s): tokens in %d, out %d, cache write %d, cache read %d; cost $%.4f",
            source, usage.input_tokens, usage.output_tokens, usage.cache_write_tokens, usage.cache_read_tokens,
            usage.cost_usd,
        )
        if usage.unpriced_tokens:
            self.ctx.log.warning(
                "no price known for %d of these tokens (model %s): the cost leaves them out; "
                "set agent.model and, for a model braid does not know, agent.pricing",
                usage.unpriced_tokens, self._model() or "not named",
            )
