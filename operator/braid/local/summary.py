"""The table and conflict list printed when a local run ends."""

from __future__ import annotations

from datetime import datetime

from braid.api import ParallelRun, ParallelRunStatus, TaskStatus


def _seconds(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return f"{(datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds():.0f}s"


def render_summary(run: ParallelRun, status: ParallelRunStatus) -> str:
    rows = [("TASK", "PHASE", "TIME", "COMMIT", "FILES", "COST", "NOTE")]
    for task in run.spec.tasks:
        s = status.tasks.get(task.name) or TaskStatus()
        note = " ".join(x for x in (s.reason or "", s.message or "") if x)
        cost = f"${s.usage.cost_usd:.4f}" if s.usage and s.usage.cost_usd else "-"
        if s.usage and s.usage.unpriced_tokens:
            cost = ("" if cost == "-" else cost + " + ") + "unpriced"
        rows.append((task.name, s.phase, _seconds(s.started_at, s.finished_at), (s.commit or "")[:10],
                     str(len(s.changed_files or [])), cost, note[:80]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    u = status.usage
    lines.append("")
    lines.append(f"usage: {u.input_tokens} input, {u.output_tokens} output, {u.cache_read_tokens} cache-read, "
                 f"{u.cache_write_tokens} cache-write tokens; ${u.cost_usd:.4f}"
                 + (f" (not counting {u.unpriced_tokens} tokens braid has no price for)" if u.unpriced_tokens else ""))
    merge = status.merge
    if merge and merge.phase != "Pending":
        lines.append(f"merge: {merge.phase}: {len(merge.merged)} merged into {merge.branch}"
                     + (f" at {merge.commit[:10]}" if merge.commit else ""))
        if merge.message:
            lines.append(f"  {merge.message}")
        for conflict in merge.conflicts:
            if conflict.reason is not None:
                lines.append(f"  not merged: task {conflict.task} [{conflict.reason}]: {conflict.message or ''}")
            for f in conflict.files:
                with_ = f" (collides with {', '.join(f.collides_with)})" if f.collides_with else ""
                lines.append(f"  conflict: task {conflict.task}: {f.path} [{f.kind}]{with_}")
        held = [n for n in merge.not_merged if n not in {c.task for c in merge.conflicts}]
        if held:
            lines.append(f"  not merged: {', '.join(held)}")
    lines.append(f"phase: {status.phase}")
    return "\n".join(lines)
