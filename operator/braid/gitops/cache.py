"""One shared object cache per repository: fetched incrementally, then every task checks out from it."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .git import GitError, Repo


def normalize_url(url: str) -> str:
    """Local paths become absolute paths; URLs are kept as written."""
    if "://" in url or (":" in url and not url.startswith(("/", ".")) and "@" in url.split(":", 1)[0]):
        return url
    return str(Path(url).expanduser().resolve())


class ObjectCache:
    """A bare mirror of each repository's branches under `root`, shared by every task of every run."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()[:20]
        return self.root / f"{digest}.git"

    @contextmanager
    def _locked(self, url: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.path_for(url).with_suffix(".lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def update(self, url: str, env: Mapping[str, str] | None = None) -> Repo:
        """Bring the cache's branches and tags up to date with `url`; return the cache repository."""
        path = self.path_for(url)
        with self._locked(url):
            repo = Repo(path, env)
            if not (path / "objects").is_dir():
                path.mkdir(parents=True, exist_ok=True)
                repo.run("init", "--bare", "--quiet")
                repo.run("config", "gc.auto", "0")
            try:
                repo.run(
                    "fetch", "--quiet", "--prune", "--no-auto-gc", url,
                    "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
                )
            except GitError as exc:
                raise RepositoryUnreachable(url, exc.stderr) from None
            return repo


class RepositoryUnreachable(RuntimeError):
    def __init__(self, url: str, detail: str):
        self.url = url
        lines = [ln for ln in detail.splitlines() if ln.strip()]
        super().__init__(f"cannot fetch {url}: {lines[-1] if lines else 'unknown error'}")


def default_cache_root() -> Path:
    base = os.environ.get("BRAID_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "braid"
    )
    return Path(base) / "git"
