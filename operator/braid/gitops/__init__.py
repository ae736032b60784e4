"""Git operations: shared object cache, task branches, commits and leased pushes."""

from .auth import git_auth_env
from .cache import ObjectCache, RepositoryUnreachable, default_cache_root, normalize_url
from .files import FileTooLarge, fetch_ref, file_commit, read_file
from .git import GitError, Repo
from .secrets import Leak, Secrets, scan_outgoing
from .workspace import (
    BranchExists,
    BranchMoved,
    Committed,
    DependencyConflict,
    MissingRef,
    Prepared,
    changed_files,
    commit_all,
    mark_pushed,
    open_workspace,
    prepare_branch,
    push_branch,
    push_ref,
    reset_git_dir,
    resolve_base,
)

__all__ = [
    "BranchExists", "BranchMoved", "Committed", "DependencyConflict", "FileTooLarge", "GitError", "Leak", "MissingRef",
    "ObjectCache", "Prepared",
    "Repo", "RepositoryUnreachable", "Secrets", "changed_files", "commit_all", "default_cache_root", "git_auth_env",
    "fetch_ref", "file_commit", "mark_pushed", "normalize_url", "open_workspace", "prepare_branch", "push_branch",
    "push_ref", "read_file", "reset_git_dir",
    "resolve_base", "scan_outgoing",
]
