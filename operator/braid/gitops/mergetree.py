"""`git merge-tree --write-tree` (git >= 2.38): merging two commits without a work tree, and reading its
output into conflicts by file and kind (the parsing is pure)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .git import GitError, Repo

log = logging.getLogger(__name__)

_CONFLICT = re.compile(r"^CONFLICT \(([^)]*)\)")


@dataclass(frozen=True)
class FileConflict:
    path: str
    kind: str
    message: str


def kind_of(label: str) -> str:
    """braid's conflict kind for git's label, e.g. 'add/add' or 'rename/delete'."""
    label = label.lower()
    if label in ("content", "contents"):
        return "content"
    if label == "add/add":
        return "add/add"
    if label in ("modify/delete", "delete/modify"):
        return "modify/delete"
    if "rename" in label:
        return "rename"
    if "file/directory" in label or "directory/file" in label:
        return "file/directory"
    if "binary" in label:
        return "binary"
    if "mode" in label:
        return "mode"
    return "other"


def parse_merge_tree(output: str) -> tuple[str, list[FileConflict]]:
    """(tree id, conflicts) from `git merge-tree --write-tree -z` output (git >= 2.38).

    Layout: <tree> NUL, conflicted entries '<mode> <oid> <stage>\\t<path>' NUL ..., an
    empty field, then messages: <count> NUL <path>... NUL <type> NUL <message> NUL.
    The message text carries git's precise label (the type field says 'contents' even
    for add/add), so the kind is read from the message.
    """
    fields = output.split("\0")
    tree = fields[0].strip()
    i = 1
    while i < len(fields) and fields[i] != "":
        i += 1
    i += 1
    found: list[FileConflict] = []
    while i < len(fields):
        if not fields[i].strip().isdigit():
            break
        count = int(fields[i])
        paths = fields[i + 1 : i + 1 + count]
        label_type = fields[i + 1 + count] if i + 1 + count < len(fields) else ""
        message = fields[i + 2 + count] if i + 2 + count < len(fields) else ""
        i += 3 + count
        match = _CONFLICT.match(message.strip()) or _CONFLICT.match(label_type)
        if match and paths:
            found.append(FileConflict(paths[0], kind_of(match.group(1)), message.strip()))
    return tree, _one_per_path(found)


def _one_per_path(found: list[FileConflict]) -> list[FileConflict]:
    """One entry per user-visible path, with the most specific kind git gave.

    git reports a binary file as both 'binary' and 'content', and for a file/directory
    clash it moves the file aside to 'path~branch' and talks about that name; users know
    the file by its original path.
    """
    moved_aside = {}
    for c in found:
        if c.kind == "file/directory" and "~" in c.path:
            moved_aside[c.path] = c.path.rsplit("~", 1)[0]
    best: dict[str, FileConflict] = {}
    for c in found:
        path = moved_aside.get(c.path, c.path)
        if c.path in moved_aside and c.kind != "file/directory":
            continue
        c = FileConflict(path, c.kind, c.message)
        current = best.get(path)
        if current is None or _RANK.index(c.kind) < _RANK.index(current.kind):
            best[path] = c
    return [best[p] for p in dict.fromkeys(moved_aside.get(c.path, c.path) for c in found) if p in best]


_RANK = ["file/directory", "binary", "rename", "modify/delete", "add/add", "mode", "content", "other"]


@dataclass(frozen=True)
class Stage:
    mode: str
    oid: str


def parse_stages(output: str) -> dict[str, dict[int, Stage]]:
    """The conflicted entries of `git merge-tree --write-tree -z` output: path -> stage (1 base, 2 ours,
    3 theirs) -> (mode, blob)."""
    fields = output.split("\0")
    stages: dict[str, dict[int, Stage]] = {}
    for entry in fields[1:]:
        if entry == "":
            break
        info, _, path = entry.partition("\t")
        parts = info.split(" ")
        if len(parts) != 3 or not parts[2].isdigit():
            continue
        stages.setdefault(path, {})[int(parts[2])] = Stage(parts[0], parts[1])
    return stages


@dataclass(frozen=True)
class MergeTree:
    clean: bool
    tree: str
    conflicts: list[FileConflict]
    stages: dict[str, dict[int, Stage]]


def merge_tree(repo: Repo, ours: str, theirs: str) -> MergeTree:
    """Merge commits `ours` and `theirs` in `repo` (objects only). Raises GitError when git cannot merge them."""
    code, out, err = repo.run("merge-tree", "--write-tree", "-z", ours, theirs, check=False)
    if code not in (0, 1):
        raise GitError(["merge-tree"], code, err)
    tree, files = parse_merge_tree(out)
    return MergeTree(code == 0, tree, files if code == 1 else [], parse_stages(out) if code == 1 else {})


RISK_REFS = "refs/braid/risk/"
"""Where the run's other task branches land in a working copy for the conflict check."""


def branch_conflicts(repo: Repo, prefix: str, own: str, commit: str, env: Mapping[str, str] | None = None,
                     limit: int = 20) -> tuple[list[tuple[str, str, list[FileConflict]]], bool]:
    """Fetch every remote branch under `prefix` (e.g. braid/<run>/tasks/) into the working copy and merge each
    but `own` with `commit`. ([(branch name below prefix, its commit, conflicts)], whether some were left out).

    Branches that are ancestors or descendants of `commit` merge cleanly and are not checked.
    """
    repo.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--prune", "origin",
             f"+refs/heads/{prefix}*:{RISK_REFS}*", env=env)
    listed = repo.out("for-each-ref", "--format=%(objectname) %(refname)", RISK_REFS)
    found: list[tuple[str, str, list[FileConflict]]] = []
    truncated = False
    for line in sorted(listed.splitlines()):
        oid, _, ref = line.partition(" ")
        name = ref[len(RISK_REFS):]
        if not name or name == own or oid == commit:
            continue
        if repo.run("merge-base", "--is-ancestor", oid, commit, check=False)[0] == 0 or \
                repo.run("merge-base", "--is-ancestor", commit, oid, check=False)[0] == 0:
            continue
        if repo.run("merge-base", oid, commit, check=False)[0] != 0:
            continue  # unrelated histories: the merge reports them
        result = merge_tree(repo, commit, oid)
        if result.clean:
            continue
        if len(found) >= limit:
            truncated = True
            break
        found.append((name, oid, result.conflicts))
    return found, truncated
