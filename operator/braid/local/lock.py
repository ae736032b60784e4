"""One `braid run` (or `braid clean`) per state directory at a time."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RunLocked(RuntimeError):
    """Another `braid run` (or `braid clean`) holds the state directory."""

    def __init__(self, state_dir: Path, pid: str, holder: str):
        self.pid = pid
        self.holder = holder
        super().__init__(f"another `{holder}` (pid {pid}) is using {state_dir}; wait for it to finish or stop it")


def _holder(fd: int) -> tuple[str, str]:
    """The pid and command written by whoever holds the lock: `<pid> [<command>]`."""
    words = os.pread(fd, 64, 0).decode(errors="replace").split()
    pid = words[0] if words and words[0].isdigit() else "unknown"
    return pid, " ".join(words[1:]) or "braid run"


@contextmanager
def state_lock(state_dir: Path, holder: str = "braid run") -> Iterator[None]:
    """Hold `state_dir` for this process. The kernel drops the lock when the process dies, kill -9 included.

    `braid clean --purge` moves a state directory away while it holds it: a lock taken on a
    file that is no longer at `state_dir/lock` is dropped and taken again on the new one.
    """
    while True:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command = _holder(fd)
            os.close(fd)
            raise RunLocked(state_dir, pid, command) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {holder}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
