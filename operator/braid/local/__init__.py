"""The same ParallelRun without Kubernetes: worktrees and subprocesses on one machine."""

from .engine import InvalidRun, LocalOptions, LocalRun
from .lock import RunLocked
from .summary import render_summary

__all__ = ["InvalidRun", "LocalOptions", "LocalRun", "RunLocked", "render_summary"]
