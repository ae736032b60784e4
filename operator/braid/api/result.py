"""The small JSON a finished task reports (a pod's termination message, a local result file)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from .common import Model
from .status import Usage

# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096


class TaskResult(Model):
    run: str
    task: str
    phase: Literal["Succeeded", "Failed", "Cancelled"]
    branch: str
    commit: str | None = None
    transcript: str | None = Field(None, description="The commit pushed to the task's transcript ref, if any.")
    changed_files: list[str] = Field(default_factory=list)
    changed_files_total: int = 0
    usage: Usage = Field(default_factory=Usage)
    reason: str | None = None
    message: str | None = None
    duration_seconds: float = 0.0

    def compact_json(self, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """JSON under `limit` bytes: the file list and message are shortened first, never the commit or usage."""
        data = self.model_copy(deep=True)
        data.changed_files_total = len(self.changed_files)
        text = json.dumps(data.wire(), separators=(",", ":"))
        while len(text.encode()) > limit and data.changed_files:
            data.changed_files = data.changed_files[: len(data.changed_files) // 2]
            text = json.dumps(data.wire(), separators=(",", ":"))
        if len(text.encode()) > limit and data.message:
            data.message = data.message[:200] + "..."
            text = json.dumps(data.wire(), separators=(",", ":"))
        return text
