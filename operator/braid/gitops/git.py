"""Running git: one place that sets the environment and turns failures into GitError."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from git.cmd import Git
from git.exc import GitCommandError

# Never prompt on a terminal, never read the user's or system's config: a run must
# behave the same on a laptop and in a pod.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "braid",
    "GIT_AUTHOR_EMAIL": "braid@localhost",
    "GIT_COMMITTER_NAME": "braid",
    "GIT_COMMITTER_EMAIL": "braid@localhost",
    "LC_ALL": "C",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",
}

# Settings that win over anything a repository's own config says (an agent can write
# .git/config): nothing git would run on braid's behalf comes from the workspace.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "core.askPass=",
    "credential.helper=",
    "protocol.ext.allow=never",
    "diff.external=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "push.gpgSign=false",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "push.recurseSubmodules=no",
    "gc.auto=0",
    "maintenance.auto=false",
)
_SAFE_ARGS = tuple(arg for item in SAFE_CONFIG for arg in ("-c", item))


class GitError(RuntimeError):
    def __init__(self, args: list[str], status: int, stderr: str):
        self.status = status
        self.stderr = stderr.strip()
        super().__init__(f"git {args[0] if args else ''} failed ({status}): {self.stderr[-600:]}")


def identity_env() -> dict[str, str]:
    env = {}
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"] = os.environ.get("BRAID_GIT_NAME", "braid")
        env[f"GIT_{who}_EMAIL"] = os.environ.get("BRAID_GIT_EMAIL", "braid@localhost")
    return env


class Repo:
    """A git directory (work tree or bare) plus the environment every call runs with."""

    def __init__(self, path: Path, env: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.env = {**_BASE_ENV, **identity_env(), **(env or {})}
        self._git = Git(str(self.path))

    def run(self, *args: str, check: bool = True, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        """Run `git args...`; return (status, stdout, stderr). Raise GitError on failure when `check`."""
        argv = ["git", *_SAFE_ARGS, *args]
        try:
            status, out, err = self._git.execute(
                argv,
                with_extended_output=True,
                with_exceptions=False,
                env={**self.env, **(env or {})},
                istream=None if stdin is None else _stdin_file(stdin),
                strip_newline_in_stdout=False,
            )
        except GitCommandError as exc:  # only raised when git cannot be started at all
            raise GitError(list(args), exc.status or 127, str(exc)) from None
        if check and status != 0:
            raise GitError(list(args), status, err)
        return status, out, err

    def run_bytes(self, *args: str, stdin: str | None = None) -> tuple[int, bytes, str]:
        """Like run (checked), with stdout as bytes: for object contents."""
        try:
            status, out, err = self._git.execute(
                ["git", *_SAFE_ARGS, *args], with_extended_output=True, with_exceptions=False, env=self.env,
                istream=None if stdin is None else _stdin_file(stdin), stdout_as_string=False,
                strip_newline_in_stdout=False,
            )
        except GitCommandError as exc:
            raise GitError(list(args), exc.status or 127, str(exc)) from None
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        if status != 0:
            raise GitError(list(args), status, err)
        return status, out, err

    def out(self, *args: str) -> str:
        return self.run(*args)[1].strip()

    def out_z(self, *args: str) -> str:
        """Output kept exactly (for -z lists, whose paths may end in spaces)."""
        return self.run(*args)[1]

    def rev(self, ref: str) -> str | None:
        """The commit `ref` names, or None."""
        status, out, _ = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return out.strip() if status == 0 else None


def _stdin_file(text: str):
    import tempfile

    fh = tempfile.TemporaryFile()  # noqa: SIM115 - the caller owns and closes it
    fh.write(text.encode())
    fh.seek(0)
    return fh
