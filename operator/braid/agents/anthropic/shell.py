"""Running one command for the model: in the worktree, minimal environment, bounded time and output."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LIMIT = 30_000
"""Characters of tool output the model sees; more is cut from the middle."""


def truncate(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """`text` with its middle cut out when longer than `limit`, the cut marked so the model knows."""
    if len(text) <= limit:
        return text
    head, tail = limit // 2, limit // 2
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... output truncated: {omitted} characters omitted ...]\n{text[-tail:]}"


@dataclass
class Completed:
    exit_code: int | None
    """None when the command was stopped (timeout or cancellation)."""
    output: str
    stopped: str | None = None
    """Why it was stopped: "timeout" or "cancelled"."""


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float, cancel: threading.Event,
        preexec: Callable[[], None] | None = None) -> Completed:
    """Run `argv` with stdout and stderr interleaved; `preexec` puts it under the agent's limits.
    Raises OSError when it cannot start (or cannot be put under its limits)."""
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=preexec,
            )
        except subprocess.SubprocessError:
            raise OSError(errno.EPERM, "cannot put the command into the agent's cgroup or under its limits") from None
        deadline = time.monotonic() + timeout
        stopped = None
        while proc.poll() is None:
            if cancel.wait(0.05):
                stopped = "cancelled"
            elif time.monotonic() > deadline:
                stopped = "timeout"
            if stopped:
                break
        # Whatever the command left running in the background goes with it: nothing
        # the model starts may outlive its tool call.
        _kill_group(proc)
        return Completed(None if stopped else proc.returncode, _read_capped(out), stopped)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_capped(fh, limit: int = OUTPUT_LIMIT) -> str:
    """The output, reading at most about 2 x `limit` bytes of it however much there is."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    if size <= 2 * limit:
        return truncate(fh.read().decode(errors="replace"), limit)
    head = fh.read(limit // 2).decode(errors="replace")
    fh.seek(size - limit // 2)
    tail = fh.read().decode(errors="replace")
    return f"{head}\n[... output truncated: {size - 2 * (limit // 2)} bytes omitted ...]\n{tail}"
