"""Git operations: shared object cache, task branches, commits and leased pushes."""

from .auth import git_auth_env
from .cache import ObjectCache, RepositoryUnreachable, default_cache_root, normalize_url
from .git import GitError, Repo
from .workspace import (
    BranchExists,
    BranchMoved,
    DependencyConflict,
    MissingRef,
    Prepared,
    changed_files,
    commit_all,
    mark_pushed,
    open_workspace,
    prepare_branch,
    push_branch,
    resolve_base,
)

__all__ = [
    "BranchExists", "BranchMoved", "DependencyConflict", "GitError", "MissingRef", "ObjectCache", "Prepared", "Repo",
    "RepositoryUnreachable", "changed_files", "commit_all", "default_cache_root", "git_auth_env", "normalize_url",
    "mark_pushed", "open_workspace", "prepare_branch", "push_branch", "resolve_base",
]
