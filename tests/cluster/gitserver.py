"""A git remote that pods on the test node can reach: `git daemon` serving bare
repositories over git:// on the node's IP, anonymous push enabled.

The node IP is an address of this machine (the node's bridge, see hack/node.sh), so
every byte stays on this machine: pods sit on that bridge and reach it on-link.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} in {repo} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout.strip()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class GitServer:
    """`git daemon` for the bare repositories under `root`, at git://host:port/<name>."""

    def __init__(self, root: Path, host: str):
        self.root = Path(root)
        self.host = host
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root.parent / "git-daemon.log"

    def start(self, timeout: float = 20) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the port is free when picked; another process may take it first
            self.port = _free_port(self.host)
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    ["git", "daemon", f"--listen={self.host}", f"--port={self.port}", f"--base-path={self.root}",
                     "--export-all", "--enable=receive-pack", "--reuseaddr", "--informative-errors",
                     "--verbose", str(self.root)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, **GIT_ENV},
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _accepts(self.host, self.port):
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"git daemon did not start on {self.host}: see {self.log}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def url(self, name: str) -> str:
        return f"git://{self.host}:{self.port}/{name}"

    def create_repo(self, name: str, files: dict[str, str], branch: str = "main") -> Path:
        """A bare repository `name` whose `branch` holds one commit with `files`."""
        bare = self.root / name
        work = self.root.parent / f"{name}.work"
        work.mkdir(parents=True)
        git(work, "init", "--quiet", f"--initial-branch={branch}")
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        git(work, "add", "--all")
        git(work, "commit", "--quiet", "-m", "initial")
        subprocess.run(["git", "clone", "--quiet", "--bare", str(work), str(bare)], check=True,
                       env={**os.environ, **GIT_ENV}, stdin=subprocess.DEVNULL)
        return bare

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
