"""What a person watching a local run sees: a live table on a terminal, one line per change otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from braid.api import ParallelRun, ParallelRunStatus, TaskStatus
from braid.api.quantity import format_bytes, memory_bytes
from braid.text import printable

_SYMBOL = {"Pending": "·", "Running": "▶", "Succeeded": "✓", "Failed": "✗", "Skipped": "-", "Cancelled": "⊘"}
_COLOR = {"Succeeded": "32", "Failed": "31", "Running": "36", "Skipped": "33", "Cancelled": "33"}


def _usage(state: TaskStatus, limits: dict) -> str:
    """A running agent's CPU and memory, with its limits: `0.10/0.1 CPU  18.2Mi/20Mi`."""
    used = state.resource_usage
    if used is None or state.phase != "Running":
        return ""
    cpu = f"{used.cpu_cores:.2f}" + (f"/{limits['cpu']}" if "cpu" in limits else "") + " CPU"
    memory = format_bytes(used.memory_bytes)
    if "memory" in limits:
        memory += f"/{format_bytes(memory_bytes(limits['memory']))}"
    return f"{cpu}  {memory}"


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, run: ParallelRun, live: bool | None = None, out: TextIO | None = None):
        self.run = run
        self.out = out or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.started = time.monotonic()
        self._drawn = 0
        self._last_draw = 0.0

    @property
    def status(self) -> ParallelRunStatus:
        """The run's status as it stands now (the engine replaces it at every step)."""
        return self.run.status or ParallelRunStatus()

    def start(self) -> None:
        n = len(self.run.spec.tasks)
        self._line(f"braid: running {self.run.name}: {n} tasks, at most {self.run.spec.max_parallel} at a time")

    def event(self, task: str, phase: str, detail: str) -> None:
        if self.live:
            return  # the table shows it
        elapsed = _elapsed(time.monotonic() - self.started)
        state = self.status.tasks.get(task)
        extra = detail
        if not extra and phase in ("Succeeded", "Failed") and state:
            commit = (state.commit or "")[:10]
            extra = " ".join(x for x in (commit, state.reason or "", state.message or "") if x)
        self._line(f"[{elapsed:>6}] {task:<24} {phase:<9} {extra}".rstrip())

    def message(self, text: str) -> None:
        self._clear()
        self._line(f"braid: {text}")

    def tick(self, running_since: dict[str, float]) -> None:
        if not self.live or time.monotonic() - self._last_draw < 0.2:
            return
        self._last_draw = time.monotonic()
        self._clear()
        lines = self._table(running_since)
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines)

    def stop(self) -> None:
        if self.live:
            self._clear()
            self.out.write("\n".join(self._table({})) + "\n")
            self.out.flush()
            self._drawn = 0

    # -- drawing -------------------------------------------------------------------------------

    def _table(self, running_since: dict[str, float]) -> list[str]:
        width, height = shutil.get_terminal_size((100, 30))
        counts = self.status.counts
        ended = counts.succeeded + counts.failed + counts.skipped + counts.cancelled
        bar_width = max(10, min(40, width - 70))
        filled = int(bar_width * ended / max(1, counts.total))
        bar = "█" * filled + "░" * (bar_width - filled)
        header = (
            f"{bar} {ended}/{counts.total} done · {counts.running} running · {counts.failed} failed · "
            f"${self.status.usage.cost_usd:.2f} · {_elapsed(time.monotonic() - self.started)}"
        )
        rows = []
        now = time.monotonic()
        for task in self.run.spec.tasks:
            state = self.status.tasks[task.name]
            since = running_since.get(task.name)
            elapsed = _elapsed(now - since) if since else ""
            detail = (state.commit or "")[:10] if state.phase == "Succeeded" else (state.reason or "")
            if state.phase == "Pending" and task.depends_on:
                detail = "waits for " + ", ".join(task.depends_on)
            resources = self.run.spec.resources_for(task)
            usage = _usage(state, (resources.limits or {}) if resources else {})
            symbol = self._paint(state.phase, _SYMBOL.get(state.phase, "?"))
            detail = printable(detail, newlines=False)
            rows.append(f" {symbol} {task.name:<24} {state.phase:<9} {elapsed:>7}  {usage:<22} {detail}".rstrip()
                        [: width - 1])
        room = max(3, height - 3)
        if len(rows) > room:
            active = [r for r, t in zip(rows, self.run.spec.tasks, strict=True)
                      if self.status.tasks[t.name].phase not in ("Pending", "Succeeded")]
            rows = active[: room - 1] + [f" … {len(rows) - len(active[: room - 1])} more"]
        return [header, *rows]

    def _paint(self, phase: str, text: str) -> str:
        code = _COLOR.get(phase)
        return f"\x1b[{code}m{text}\x1b[0m" if code and self.live else text

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _line(self, text: str) -> None:
        self._clear()
        self.out.write(printable(text) + "\n")
        self.out.flush()
