"""Agent subprocesses that never outlive `braid run`, and the leftovers of one that was killed.

Each `braid agent-run` gets SIGTERM when the `braid run` that started it dies (Linux's parent
death signal), so it stops its agent and pushes what it has. Each is also recorded in the
run's registry with its start time, so a run that starts after a `kill -9` finds whatever
still runs and stops it before touching its working copies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from braid.confine.limits import Cgroup

PR_SET_PDEATHSIG = 1


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot.

    None when no such process runs; an exited process not yet reaped (a zombie) runs no more.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = text[text.rindex(")") + 2:].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return fields[19] if len(fields) > 19 else None


def _die_with(parent: int):
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)
    return preexec


def spawn(argv: list[str], *, env: dict[str, str], log_path: Path, registry: Path,
          task: str, stdin: bytes | None = None, cgroups: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start argv in its own session (Ctrl-C reaches only braid, which stops children in order).

    `stdin` is written to the child's standard input, which is then closed: how a secret
    reaches it without being in its environment, its arguments or a file. `cgroups` (the
    attempt's own) are recorded with the process, so that a later run removes them too.
    """
    registry.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE, env=env,
                                start_new_session=True, preexec_fn=_die_with(os.getpid()))
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin)
        proc.stdin.close()
    record = {"pid": proc.pid, "start": _start_time(proc.pid), "cgroups": list(cgroups or [])}
    (registry / f"{task}.json").write_text(json.dumps(record))
    return proc


def forget(registry: Path, task: str) -> None:
    (registry / f"{task}.json").unlink(missing_ok=True)


def _alive(pid: int, start: str | None) -> bool:
    return start is not None and _start_time(pid) == start


def running(registry: Path) -> dict[str, int]:
    """The tasks whose recorded `braid agent-run` still runs, with its pid (nothing is stopped)."""
    alive: dict[str, int] = {}
    if not registry.is_dir() or registry.is_symlink():
        return alive
    for path in sorted(registry.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            pid, start = int(record["pid"]), record.get("start")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid > 0 and _alive(pid, start):
            alive[path.stem] = pid
    return alive


def stop_leftovers(registry: Path, grace_seconds: float = 30.0) -> list[str]:
    """Stop every recorded process group that still runs, and whatever runs in its cgroups; remove
    those cgroups; forget every record. The tasks stopped."""
    if not registry.is_dir():
        return []
    running: dict[str, tuple[int, str]] = {}
    cgroups: list[Path] = []
    for path in sorted(registry.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            pid, start = int(record["pid"]), record.get("start")
            cgroups += [Path(p) for p in record.get("cgroups") or [] if isinstance(p, str) and Path(p).name.startswith("braid-")]
        except (OSError, ValueError, KeyError, TypeError):
            pid, start = 0, None
        if pid > 0 and _alive(pid, start):
            running[path.stem] = (pid, start)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while any(_alive(p, s) for p, s in running.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid, start in running.values():
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for cgroup in cgroups:
        if (cgroup / "cgroup.procs").is_file():
            Cgroup.attach([cgroup]).remove()
    for path in registry.glob("*.json"):
        path.unlink(missing_ok=True)
    return sorted(running)
