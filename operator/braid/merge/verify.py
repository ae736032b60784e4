"""Running spec.merge.verify on the integration result, and bisecting the merge order when it fails.

The verify command is untrusted code (it comes from the repository as much as from the spec):
it runs in a checkout of files only (no .git, no object cache), with a minimal environment
(no git credentials, no API key), under the bubblewrap sandbox on a local run when there is
one, and in a container of its own, without any secret, in the merge Job (see `serve`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from braid.api import Culprit, MergeRequest, MergeStatus, Verification, VerifiedPrefix, VerifyRun
from braid.api.status import VERIFY_OUTPUT_LIMIT
from braid.confine import Sandbox
from braid.gitops import Repo
from braid.plan import Node
from braid.plan.verify import EXCLUDE_ROUNDS, bounded_output, culprit, exclusion, next_prefix

log = logging.getLogger("braid.merge")

# What the verify command gets of the environment it is started from; nothing else (a token, a key).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
OUTPUT_READ = 4 * VERIFY_OUTPUT_LIMIT
DONE_FILE = "done"
HANDOFF_GRACE_SECONDS = 60.0
"""How long past a run's timeout the merge waits for the verify container's answer."""


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    output: bytes
    """The end of what the command wrote (stdout and stderr), as read; bounded before it goes anywhere."""

    @property
    def phase(self) -> str:
        if self.timed_out:
            return "TimedOut"
        return "Passed" if self.exit_code == 0 else "Failed"


class Verifier(Protocol):
    root: Path
    """Where the checkouts are made: one directory per run, with the checkout in its `work`."""

    def run(self, run_dir: Path, argv: Sequence[str], env: dict[str, str], timeout: float) -> Outcome: ...


def minimal_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["TERM"] = "dumb"
    env.update(extra)
    return env


def _tail(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - OUTPUT_READ))
            return fh.read(OUTPUT_READ)
    except OSError:
        return b""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class VerifyInterrupted(RuntimeError):
    def __init__(self) -> None:
        super().__init__("the merge was interrupted during verification; nothing pushed")


def execute(argv: Sequence[str], cwd: Path, env: dict[str, str], timeout: float, output: Path,
            interrupted: Callable[[], bool] | None = None) -> Outcome:
    """Run `argv` (no shell) in a session of its own; everything it started is stopped at the timeout.
    Raises VerifyInterrupted, once the command is stopped, when `interrupted()` turns true."""
    started = time.monotonic()
    with open(output, "wb") as out:
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            out.write(f"braid: cannot start {argv[0]!r}: {exc.strerror or exc}\n".encode())
            out.flush()
            return Outcome(127, False, round(time.monotonic() - started, 3), _tail(output))
        timed_out = stopped = False
        deadline = started + timeout
        try:
            while proc.poll() is None:
                if interrupted is not None and interrupted():
                    stopped = True
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(left, 0.2))
        finally:
            # what it left running in its session ends with it
            _stop(proc)
    if stopped:
        raise VerifyInterrupted()
    code = None if timed_out else proc.returncode
    return Outcome(code, timed_out, round(time.monotonic() - started, 3), _tail(output))


@dataclass
class LocalVerifier:
    """Runs the command on this machine: in a bubblewrap sandbox when `bwrap` is given, else unconfined."""

    root: Path
    bwrap: str | None = None
    hidden: tuple[Path, ...] = ()
    """What the sandbox hides (home, braid's state and cache, credentials, a local remote)."""
    shared: tuple[Path, ...] = ()
    """Directories the user lets sandboxed code write (`braid run --share`)."""
    interrupted: Callable[[], bool] | None = None
    """The launcher is stopping (Ctrl-C, braid cancel): the running command is stopped, nothing pushed."""

    def run(self, run_dir: Path, argv: Sequence[str], env: dict[str, str], timeout: float) -> Outcome:
        workdir = run_dir / "work"
        env = minimal_env(env)
        if self.bwrap is not None:
            sandbox = Sandbox(self.bwrap, workdir, hidden=(*self.hidden, self.root), shared=self.shared)
            argv = sandbox.wrap(argv, env, workdir)
        return execute(argv, workdir, env, timeout, run_dir / "output.log", self.interrupted)


@dataclass
class HandoffVerifier:
    """Hands each run to `braid verify-serve` in another container through a shared directory (the merge Job)."""

    root: Path
    poll_seconds: float = 0.2

    def run(self, run_dir: Path, argv: Sequence[str], env: dict[str, str], timeout: float) -> Outcome:
        request = {"argv": list(argv), "env": env, "timeoutSeconds": timeout}
        _write_atomic(run_dir / "request.json", json.dumps(request))
        result_path = run_dir / "result.json"
        started = time.monotonic()
        deadline = started + timeout + HANDOFF_GRACE_SECONDS
        while time.monotonic() < deadline:
            if result_path.exists():
                result = _read_result(result_path)
                if result is not None:
                    code, timed_out, duration = result
                    return Outcome(code, timed_out, duration, _tail(run_dir / "output.log"))
            time.sleep(self.poll_seconds)
        log.warning("the verify container did not answer within %ss", int(timeout + HANDOFF_GRACE_SECONDS))
        return Outcome(None, True, round(time.monotonic() - started, 3), _tail(run_dir / "output.log"))

    def finish(self) -> None:
        """Tell the verify container there is nothing more to run."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / DONE_FILE).touch()


def _read_result(path: Path) -> tuple[int | None, bool, float] | None:
    """The verify container's answer, read as untrusted input (it shares a directory with the command)."""
    try:
        data = json.loads(path.read_bytes()[:4096])
        code = data.get("exitCode")
        code = int(code) if isinstance(code, int) and not isinstance(code, bool) else None
        timed_out = data.get("timedOut") is True
        duration = float(data.get("durationSeconds") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return code, timed_out or code is None, max(0.0, min(duration, 1e7))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def serve(root: Path, poll_seconds: float = 0.2) -> int:
    """`braid verify-serve`: run each verify request the merge container hands over, until it says done.

    This side holds no secret: the checkout, the command and its environment come from the
    merge container; what it answers is read as untrusted input there.
    """
    root.mkdir(parents=True, exist_ok=True)
    while not (root / DONE_FILE).exists():
        for request_path in sorted(root.glob("run-*/request.json")):
            run_dir = request_path.parent
            if (run_dir / "result.json").exists():
                continue
            try:
                request = json.loads(request_path.read_text())
                argv = [str(a) for a in request["argv"]]
                env = {str(k): str(v) for k, v in (request.get("env") or {}).items()}
                timeout = float(request["timeoutSeconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            try:
                outcome = execute(argv, run_dir / "work", minimal_env(env), timeout, run_dir / "output.log")
                _write_atomic(run_dir / "result.json", json.dumps({
                    "exitCode": outcome.exit_code, "timedOut": outcome.timed_out,
                    "durationSeconds": outcome.duration_seconds}))
            except OSError as exc:
                # the merge container gave up on this run and removed it
                log.warning("verify run %s: %s", run_dir.name, exc)
        time.sleep(poll_seconds)
    return 0


def checkout(repo: Repo, commit: str, workdir: Path) -> None:
    """The files of `commit` in `workdir`: no .git, nothing of the repository but the tree."""
    workdir.mkdir(parents=True)
    fd, index = tempfile.mkstemp(prefix="verify-index-", dir=workdir.parent)
    os.close(fd)
    os.unlink(index)
    try:
        env = {"GIT_INDEX_FILE": index}
        repo.run("read-tree", commit, env=env)
        repo.run(f"--work-tree={workdir}", "checkout-index", "--all", "--force", env=env)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(index)


# -- verification and bisection ----------------------------------------------------------------


@dataclass
class _Chain:
    """The tasks merged and the integration commit after each, in merge order."""

    status: MergeStatus
    steps: list[tuple[str, str]]

    def prefix(self, k: int, base: str) -> VerifiedPrefix:
        return VerifiedPrefix(tasks=[n for n, _ in self.steps[:k]], commit=self.steps[k - 1][1] if k else base)


@dataclass
class Verify:
    repo: Repo
    request: MergeRequest
    base: str
    verifier: Verifier
    redact: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        self.runs: list[VerifyRun] = []
        self.count = 0

    def _run(self, prefix: VerifiedPrefix) -> Outcome:
        spec = self.request.verify
        assert spec is not None
        self.count += 1
        run_dir = self.verifier.root / f"run-{self.count}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        try:
            checkout(self.repo, prefix.commit, run_dir / "work")
            env = {"BRAID_RUN": self.request.run, "BRAID_VERIFY_COMMIT": prefix.commit,
                   "BRAID_VERIFY_TASKS": json.dumps(prefix.tasks)}
            outcome = self.verifier.run(run_dir, spec.command, env, spec.timeout_seconds)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        self.runs.append(VerifyRun(tasks=prefix.tasks, commit=prefix.commit, phase=outcome.phase,
                                   exit_code=outcome.exit_code, duration_seconds=outcome.duration_seconds))
        log.info("verify on %s (%d tasks): %s", prefix.commit[:12], len(prefix.tasks), outcome.phase)
        return outcome

    def _verification(self, outcome: Outcome, commit: str, culprits: list[Culprit], excluded: list[str],
                      message: str) -> Verification:
        return Verification(phase=outcome.phase, commit=commit, exit_code=outcome.exit_code,
                            duration_seconds=outcome.duration_seconds, output=self._output(outcome),
                            culprits=culprits, excluded=excluded, runs=list(self.runs), message=message)

    def _output(self, outcome: Outcome) -> str:
        return bounded_output(outcome.output, self.redact, VERIFY_OUTPUT_LIMIT)

    def _bisect(self, chain: _Chain) -> tuple[Outcome, dict[int, bool], dict[int, Outcome]]:
        size = len(chain.steps)
        results: dict[int, bool] = {}
        outcomes: dict[int, Outcome] = {}
        while (k := next_prefix(size, results)) is not None:
            outcomes[k] = self._run(chain.prefix(k, self.base))
            results[k] = outcomes[k].phase == "Passed"
        return outcomes[size], results, outcomes

    def run(self, status: MergeStatus, steps: list[tuple[str, str]],
            rebuild: Callable[[MergeRequest], tuple[MergeStatus, list[tuple[str, str]]]]) -> MergeStatus:
        """Verify the integration `status` describes; bisect when it fails; under policy exclude rebuild
        without the culprits (by `rebuild`) until a result passes. The returned status is what to push
        (phase Failed: nothing)."""
        exclude = self.request.on_verify_failure == "exclude"
        nodes = [Node(t.name, tuple(d for d in t.depends_on if d in {u.name for u in self.request.tasks}))
                 for t in self.request.tasks]
        chain = _Chain(status, steps)
        culprits: list[Culprit] = []
        excluded: list[str] = []
        for round_ in range(1 + (EXCLUDE_ROUNDS if exclude else 0)):
            if not chain.steps:
                return self._nothing_merged(chain, culprits, excluded)
            whole, results, outcomes = self._bisect(chain)
            size = len(chain.steps)
            if whole.phase == "Passed":
                said = f"verified {size} merged tasks" + (f" without {', '.join(excluded)}" if excluded else "")
                chain.status.verification = self._verification(whole, chain.prefix(size, self.base).commit,
                                                                culprits, excluded, said)
                return self._finish(chain.status, excluded)
            found = culprit(size, results)
            assert found is not None
            passed, failed = found
            name = chain.steps[failed - 1][0]
            culprits.append(Culprit(task=name, last_passed=chain.prefix(passed, self.base),
                                    first_failed=chain.prefix(failed, self.base),
                                    output=self._output(outcomes[failed])))
            log.warning("verification fails from task %s on (prefix of %d tasks passed, %d failed)",
                        name, passed, failed)
            if not exclude:
                chain.status.verification = self._verification(
                    whole, chain.prefix(size, self.base).commit, culprits, excluded,
                    f"verification {whole.phase.lower()}; it fails from task {name} on")
                return chain.status
            if round_ == EXCLUDE_ROUNDS:
                return self._fall_back(chain, passed, outcomes, culprits, excluded)
            left_out = exclusion([name], nodes)
            culprits[-1].excluded = left_out
            excluded = sorted(set(excluded) | set(left_out))
            request = self.request.model_copy(update={
                "tasks": [t for t in self.request.tasks if t.name not in excluded],
                "not_merged": list(self.request.not_merged)})
            chain = _Chain(*rebuild(request))
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish(self, status: MergeStatus, excluded: list[str]) -> MergeStatus:
        status.not_merged = [n for n in status.not_merged if n not in excluded] + excluded
        return status

    def _fall_back(self, chain: _Chain, passed: int, outcomes: dict[int, Outcome], culprits: list[Culprit],
                   excluded: list[str]) -> MergeStatus:
        """Out of rounds: the longest prefix that passed is the one verified result left."""
        status = chain.status
        dropped = [n for n, _ in chain.steps[passed:]]
        excluded = sorted(set(excluded) | set(dropped))
        culprits[-1].excluded = dropped
        if passed == 0:
            status.verification = self._verification(
                outcomes[len(chain.steps)], chain.prefix(len(chain.steps), self.base).commit, culprits, excluded,
                f"no merged task passes verification after {EXCLUDE_ROUNDS} exclusions; nothing pushed")
            status.phase, status.message = "Failed", status.verification.message
            status.merged = []
            return self._finish(status, excluded)
        status.merged = [n for n in status.merged if n not in dropped]
        status.commit = chain.steps[passed - 1][1]
        status.verification = self._verification(
            outcomes[passed], status.commit, culprits, excluded,
            f"still failing after {EXCLUDE_ROUNDS} exclusions: pushed the longest prefix that passed ({passed} tasks)")
        return self._finish(status, excluded)

    def _nothing_merged(self, chain: _Chain, culprits: list[Culprit], excluded: list[str]) -> MergeStatus:
        """Every task was left out: the result is the base; push it only if it passes."""
        status = chain.status
        outcome = self._run(chain.prefix(0, self.base))
        status.verification = self._verification(outcome, self.base, culprits, excluded,
                                                 "every merged task was left out; verified the base")
        if outcome.phase != "Passed":
            status.phase = "Failed"
            status.message = "verification fails on the base itself; nothing pushed"
            status.verification.message = status.message
        return self._finish(status, excluded)
