"""Agent processes in a bubblewrap sandbox: the working copy writable, braid's files out of sight.

What an agent-run command sees:
- the whole file system read-only, with a fresh /dev, /proc and /tmp;
- its own working copy writable, except `.git`, which it may read but not change;
- the objects its working copy borrows, read-only;
- nothing of what `hidden` names (the user's home, braid's state and cache directories,
  credentials, the API key file, the remote when it is a local path): empty directories
  or an empty file stand in their place;
- the directories the user shares with `braid run --share`, writable;
- a PID namespace of its own: it cannot see or signal braid or any other process, and
  everything it starts ends when the command that started it ends.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class SandboxUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Sandbox:
    bwrap: str
    workdir: Path
    readonly: tuple[Path, ...] = ()
    """Paths shown read-only although inside a hidden one (the objects the working copy borrows)."""
    hidden: tuple[Path, ...] = ()
    shared: tuple[Path, ...] = ()
    """Directories the user chose to let every agent read and write (`braid run --share`)."""
    extra_env: dict[str, str] = field(default_factory=dict)

    def wrap(self, argv: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> list[str]:
        """`argv` as run inside the sandbox, with exactly `env` as its environment."""
        out = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--unshare-cgroup-try", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/dev/shm"]
        for path in _outermost(self.hidden):
            if path.is_dir():
                out += ["--tmpfs", str(path)]
            elif path.exists():
                out += ["--ro-bind", os.devnull, str(path)]
        for path in self.readonly:
            if path.exists():
                out += ["--ro-bind", str(path), str(path)]
        for path in self.shared:
            if path.is_dir():
                out += ["--bind", str(path), str(path)]
        out += ["--bind", str(self.workdir), str(self.workdir)]
        git_dir = self.workdir / ".git"
        if git_dir.exists():
            out += ["--ro-bind", str(git_dir), str(git_dir)]
        out += ["--chdir", str(cwd or self.workdir), "--clearenv"]
        for key, value in {**env, **self.extra_env}.items():
            out += ["--setenv", key, value]
        return [*out, "--", *argv]


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Each path once, none inside another (a tmpfs over the outer one hides the inner one too)."""
    unique = sorted({Path(os.path.abspath(p)) for p in paths if str(p) not in ("", "/")}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in unique:
        if not any(p == k or k in p.parents for k in kept):
            kept.append(p)
    return kept


@functools.cache
def _works(bwrap: str) -> str | None:
    """None when `bwrap` can build a sandbox here, else what went wrong."""
    try:
        done = subprocess.run([bwrap, "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev",
                               "--proc", "/proc", "--", "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip().splitlines()[-1:][0] if done.stderr else "failed"
    return None


def find_sandbox() -> str:
    """The bwrap program, checked to work here. Raises SandboxUnavailable saying why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    problem = _works(bwrap)
    if problem:
        raise SandboxUnavailable(f"bubblewrap cannot create a sandbox here: {problem}")
    return bwrap
