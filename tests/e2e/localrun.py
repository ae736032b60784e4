"""Helpers for end-to-end runs of `braid run --local` against throw-away git repositories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def make_origin(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "-m", "initial")
    return path


def branches(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/")
    return dict(line.split(" ", 1) for line in out.splitlines())


def show(repo: Path, ref: str, path: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], capture_output=True, text=True,
                          check=False)
    return proc.stdout if proc.returncode == 0 else None


def write(path: str, content: str) -> dict:
    """A script step writing `content` to `path`."""
    return {"op": "write", "path": path, "content": content}


def script_task(name: str, steps: list[dict], depends_on: list[str] | None = None) -> dict:
    task = {"name": name, "prompt": f"do {name}", "agent": {"script": {"steps": steps}}}
    if depends_on:
        task["dependsOn"] = depends_on
    return task


def manifest(name: str, origin: Path, tasks: list[dict], **spec: object) -> dict:
    return {
        "apiVersion": "braid.dev/v1alpha1",
        "kind": "ParallelRun",
        "metadata": {"name": name},
        "spec": {"repo": {"url": str(origin)}, "agent": {"backend": "script"}, "retry": {"limit": 0},
                 "tasks": tasks, **spec},
    }


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    status: dict | None


class Workspace:
    """A temp area with its own cache and state dirs, so runs never touch the user's ~/.cache."""

    def __init__(self, root: Path):
        self.root = root
        self.cache = root / "cache"
        self.state = root / "state"

    def write(self, data: dict, name: str = "run.yaml") -> Path:
        path = self.root / name
        # written out in full: braid refuses YAML anchors and aliases
        path.write_text(yaml.dump(data, Dumper=_NoAliases, sort_keys=False))
        return path

    def argv(self, run_file: Path) -> list[str]:
        return [sys.executable, "-m", "braid", "run", str(run_file), "--local", "--no-progress",
                "--cache-dir", str(self.cache), "--state-dir", str(self.state),
                "--status-out", str(self.root / "status.json")]

    def run(self, run_file: Path, *options: str, timeout: float = 120) -> Outcome:
        (self.root / "status.json").unlink(missing_ok=True)
        proc = subprocess.run([*self.argv(run_file), *options], capture_output=True, text=True, timeout=timeout, check=False)
        status_path = self.root / "status.json"
        status = json.loads(status_path.read_text()) if status_path.exists() else None
        return Outcome(proc.returncode, proc.stdout, proc.stderr, status)
