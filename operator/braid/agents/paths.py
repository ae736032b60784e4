"""Keep every file an agent touches inside its worktree."""

from __future__ import annotations

import os
from pathlib import Path


class OutsideWorktree(ValueError):
    pass


def resolve_inside(root: Path, path: str) -> Path:
    """`path` (relative to `root`) resolved with symlinks followed; refuse anything that leaves `root`.

    Absolute paths, `..` escapes and symlinks pointing outside are all refused, as is
    the repository's own .git directory.
    """
    if not path or "\x00" in path:
        raise OutsideWorktree(f"invalid path {path!r}")
    if os.path.isabs(path):
        raise OutsideWorktree(f"{path}: absolute paths are not allowed; use a path relative to the repository root")
    root = root.resolve()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise OutsideWorktree(f"{path}: leads outside the repository")
    rel = target.relative_to(root)
    if rel.parts and rel.parts[0] == ".git":
        raise OutsideWorktree(f"{path}: the .git directory is off limits")
    return target
