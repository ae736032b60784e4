"""Throw-away real git repositories for tests: make one with files, branch, commit, look inside.

Every git call runs with a fixed identity and without the user's or system's config,
so tests behave the same on a laptop and in CI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "tester",
    "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "tester",
    "GIT_COMMITTER_EMAIL": "tester@example.com",
    "LC_ALL": "C",
}


def git(path: Path, *args: str, check: bool = True, input: str | None = None) -> str:
    """`git -C path args...`; stdout with trailing whitespace stripped. AssertionError on failure."""
    proc = subprocess.run(
        ["git", "-C", str(path), *args],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **GIT_ENV},
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.rstrip()


class GitRepo:
    """A non-bare repository with `main` checked out (or a bare one, read-only helpers only)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"GitRepo({str(self.path)!r})"

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.path, *args, check=check)

    # -- writing ---------------------------------------------------------------------------------

    def write(self, files: dict[str, str | None]) -> None:
        """Write files in the work tree; None deletes the file."""
        for name, text in files.items():
            target = self.path / name
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)

    def commit(self, files: dict[str, str | None] | None = None, message: str = "change",
               branch: str | None = None) -> str:
        """Write `files` and commit them on `branch` (default: the current branch); return the commit.

        With `branch`, that branch is checked out first (created from the current HEAD when
        new) and the previous branch is checked out again afterwards.
        """
        previous = self.current_branch() if branch else None
        if branch:
            self.checkout(branch)
        self.write(files or {})
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "--allow-empty-message", "-m", message)
        head = self.rev("HEAD")
        if previous and previous != branch:
            self.checkout(previous)
        return head

    def checkout(self, branch: str, start: str | None = None) -> None:
        """Check out `branch`, creating it (from `start`, default HEAD) when it does not exist."""
        if start is not None or self.rev(f"refs/heads/{branch}") is None:
            self.git("checkout", "--quiet", "-B", branch, start or "HEAD")
        else:
            self.git("checkout", "--quiet", branch)

    def branch(self, name: str, start: str = "main") -> str:
        """Create (or move) branch `name` at `start` without checking it out; return its commit."""
        self.git("branch", "--force", name, start)
        return self.rev(name)

    def mv(self, old: str, new: str) -> None:
        (self.path / new).parent.mkdir(parents=True, exist_ok=True)
        self.git("mv", old, new)

    # -- reading ---------------------------------------------------------------------------------

    def current_branch(self) -> str:
        return self.git("symbolic-ref", "--short", "HEAD")

    def rev(self, ref: str) -> str | None:
        out = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return out or None

    def tree(self, ref: str) -> str:
        return self.git("rev-parse", f"{ref}^{{tree}}")

    def show(self, ref: str, path: str) -> str | None:
        """Content of `path` at `ref`, or None when it does not exist there."""
        proc = subprocess.run(["git", "-C", str(self.path), "show", f"{ref}:{path}"], capture_output=True,
                              text=True, env={**os.environ, **GIT_ENV}, check=False)
        return proc.stdout if proc.returncode == 0 else None

    def files(self, ref: str) -> list[str]:
        out = self.git("ls-tree", "-r", "--name-only", ref)
        return out.splitlines()

    def branches(self) -> dict[str, str]:
        """Local branch name -> commit."""
        out = self.git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def message(self, ref: str) -> str:
        return self.git("log", "-1", "--format=%B", ref)

    def parents(self, ref: str) -> list[str]:
        return self.git("log", "-1", "--format=%P", ref).split()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = subprocess.run(["git", "-C", str(self.path), "merge-base", "--is-ancestor", ancestor, descendant],
                              env={**os.environ, **GIT_ENV}, capture_output=True, check=False)
        return proc.returncode == 0


def make_repo(path: Path, files: dict[str, str] | None = None, message: str = "initial") -> GitRepo:
    """A new repository at `path` with `files` committed on `main` (checked out)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    repo = GitRepo(path)
    repo.commit(files or {"README.md": "hello\n"}, message)
    return repo


def pack_files(git_dir: Path) -> list[Path]:
    """Pack files and loose objects stored in `git_dir`/objects itself (not borrowed through alternates)."""
    objects = Path(git_dir) / "objects"
    found = list((objects / "pack").glob("*.pack")) if (objects / "pack").is_dir() else []
    for sub in objects.iterdir() if objects.is_dir() else []:
        if len(sub.name) == 2 and sub.is_dir():
            found.extend(sub.iterdir())
    return found
