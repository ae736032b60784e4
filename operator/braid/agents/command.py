"""The `command` backend: any agent CLI, run without a shell, prompt on stdin."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time

from .base import AgentContext, AgentError, AgentOutcome

# What a CLI needs to find itself and behave; nothing else of braid's environment
# (which may hold credentials) is passed on.
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
_TAIL = 4000


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
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as stdin:
            stdin.write(ctx.prompt.encode())
            stdin.seek(0)
            env = minimal_env(ctx)
            run_argv = argv
            if ctx.sandbox is not None:
                run_argv, env = ctx.sandbox.wrap(argv, env), {"PATH": env.get("PATH", "/usr/bin:/bin")}
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
            deadline = time.monotonic() + ctx.timeout_seconds
            outcome: AgentOutcome | None = None
            while proc.poll() is None:
                if ctx.cancel.wait(0.1):
                    _kill(proc)
                    outcome = AgentOutcome(False, reason="Cancelled", message="cancelled")
                elif time.monotonic() > deadline:
                    _kill(proc)
                    outcome = AgentOutcome(
                        False, reason="Timeout", message=f"{argv[0]} timed out after {ctx.timeout_seconds:g}s"
                    )
            stdout, stderr = _tail(out), _tail(err)
            if stderr:
                ctx.log.info("agent stderr (tail):\n%s", stderr)
            if outcome is not None:
                outcome.summary = stdout
                return outcome
            if proc.returncode != 0:
                last = (stderr or stdout).splitlines()[-1:] or [""]
                return AgentOutcome(
                    False,
                    summary=stdout,
                    reason="AgentFailed",
                    message=f"{argv[0]} exited with code {proc.returncode}: {last[0][:300]}",
                    # bwrap reports a child killed by signal N as exit code 128 + N
                    killed=proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL),
                )
            return AgentOutcome(True, summary=stdout)
