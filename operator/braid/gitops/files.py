"""Refs that hold one file: a parentless commit whose tree is that file alone (braid's saved conversations).

Such a ref lives outside refs/heads/, so it is fetched on its own, straight from the
remote into the working copy (never into the shared object cache), and pushed with a
lease like a task branch.
"""

from __future__ import annotations

from collections.abc import Mapping

from .git import GitError, Repo

FETCHED = "refs/braid/fetched"
"""Where a fetched one-file ref lands in the working copy."""


class FileTooLarge(ValueError):
    pass


def remote_ref(repo: Repo, ref: str, env: Mapping[str, str] | None = None) -> str | None:
    """The commit the remote's full ref `ref` holds, or None when there is no such ref. Raises GitError."""
    code, out, err = repo.run("ls-remote", "origin", ref, check=False, env=env)
    if code != 0:
        raise GitError(["ls-remote"], code, err)
    for line in out.splitlines():
        oid, _, name = line.partition("\t")
        if name.strip() == ref:
            return oid.strip()
    return None


def fetch_ref(repo: Repo, ref: str, env: Mapping[str, str] | None = None) -> str | None:
    """Fetch the remote's `ref` into the working copy; the commit it holds, or None without one."""
    if remote_ref(repo, ref, env) is None:
        return None
    repo.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "origin", f"+{ref}:{FETCHED}", env=env)
    return repo.rev(FETCHED)


def read_file(repo: Repo, commit: str, name: str, limit: int) -> bytes | None:
    """The file `name` of `commit`'s tree, or None when it has none. Raises FileTooLarge past `limit` bytes."""
    where = f"{commit}^{{commit}}:{name}"
    code, kind, _ = repo.run("cat-file", "-t", where, check=False)
    if code != 0 or kind.strip() != "blob":
        return None
    size = int(repo.out("cat-file", "-s", where))
    if size > limit:
        raise FileTooLarge(f"{name} is {size} bytes, more than {limit}")
    return repo.run_bytes("cat-file", "blob", where)[1]


def file_commit(repo: Repo, name: str, text: str, message: str) -> str:
    """A new parentless commit whose tree holds `name` with `text`, in `repo`'s objects. No ref is moved."""
    blob = repo.run("hash-object", "-w", "--stdin", stdin=text)[1].strip()
    tree = repo.run("mktree", stdin=f"100644 blob {blob}\t{name}\n")[1].strip()
    return repo.run("commit-tree", tree, "-F", "-", stdin=message)[1].strip()
