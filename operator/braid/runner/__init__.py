"""Agent pod entrypoint: prepare workspace -> run agent -> commit -> push -> report."""

from braid.api.result import TERMINATION_MESSAGE_LIMIT, TaskResult

from .run import RunnerPaths, commit_message, install_cancel_handlers, run_task

__all__ = ["TERMINATION_MESSAGE_LIMIT", "RunnerPaths", "TaskResult", "commit_message", "install_cancel_handlers",
           "run_task"]
