"""Conflicts by file and kind, as `git merge-tree` reports them (the parser lives in gitops, which the runner shares)."""

from braid.gitops.mergetree import FileConflict, kind_of, parse_merge_tree

__all__ = ["FileConflict", "kind_of", "parse_merge_tree"]
