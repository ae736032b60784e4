"""Git credentials from files: an askpass program and ssh options, never a URL or argv.

A credentials directory holds what a Kubernetes Secret of type basic-auth or
ssh-auth holds, one file per key: `username` + `password`, or `ssh-privatekey`
(+ optional `known_hosts`). Only file paths travel in the environment.
"""

from __future__ import annotations

import atexit
import functools
import shlex
import shutil
import stat
import tempfile
from pathlib import Path

_ASKPASS = """#!/bin/sh
# git asks "Username for ...:" or "Password for ...:"; answer from the files.
case "$1" in
  Username*) exec cat "$BRAID_GIT_CREDENTIALS_DIR/username" ;;
  *) exec cat "$BRAID_GIT_CREDENTIALS_DIR/password" ;;
esac
"""


def git_auth_env(credentials_dir: Path | None) -> dict[str, str]:
    """Environment that lets git authenticate from `credentials_dir` (empty when None)."""
    if credentials_dir is None:
        return {}
    credentials_dir = Path(credentials_dir)
    env = {"BRAID_GIT_CREDENTIALS_DIR": str(credentials_dir)}
    if (credentials_dir / "password").exists():
        env["GIT_ASKPASS"] = str(_askpass_program())
    key = credentials_dir / "ssh-privatekey"
    if key.exists():
        opts = ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
        known = credentials_dir / "known_hosts"
        if known.exists():
            opts += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
        else:
            opts += ["-o", "StrictHostKeyChecking=accept-new"]
        env["GIT_SSH_COMMAND"] = shlex.join(opts)
    return env


@functools.cache
def _askpass_program() -> Path:
    """The askpass script, in a directory only this process's user can enter, removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix="braid-askpass-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "askpass.sh"
    path.write_text(_ASKPASS)
    path.chmod(stat.S_IRWXU)
    return path
