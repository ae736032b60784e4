"""Reading `git merge-tree --write-tree -z` output into conflicts by file and kind. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
