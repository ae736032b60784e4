"""The table and conflict list printed when a local run ends."""

from __future__ import annotations

from datetime import datetime

from braid.api import ParallelRun, ParallelRunStatus, TaskStatus, resolver_name


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
    for name, s in status.resolvers.items():
        note = " ".join(x for x in (s.reason or "", s.message or "") if x) or f"resolves the conflicts of {name}"
        cost = f"${s.usage.cost_usd:.4f}" if s.usage and s.usage.cost_usd else "-"
        rows.append((resolver_name(name), s.phase, _seconds(s.started_at, s.finished_at), (s.commit or "")[:10],
                     str(len(s.changed_files or [])), cost, note[:80]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    u = status.usage
    lines.append("")
    lines.append(f"usage: {u.input_tokens} input, {u.output_tokens} output, {u.cache_read_tokens} cache-read, "
                 f"{u.cache_write_tokens} cache-write tokens; ${u.cost_usd:.4f}"
                 + (f" (not counting {u.unpriced_tokens} tokens braid has no price for)" if u.unpriced_tokens else ""))
    for risk in status.conflict_risk:
        files = ", ".join(f"{f.path} [{f.kind}]" for f in risk.files)
        lines.append(f"conflict risk: {risk.tasks[0]} and {risk.tasks[1]}: {files}")
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
            if conflict.reason is None and conflict.message:
                lines.append(f"    {conflict.message}")
        for conflict in merge.resolved:
            for f in conflict.files:
                lines.append(f"  resolved: task {conflict.task}: {f.path} [{f.kind}] by {f.resolution}")
        for pair in merge.left_out_conflicts:
            files = ", ".join(f"{f.path} [{f.kind}]" for f in pair.files)
            lines.append(f"  left out, conflicting with each other too: {pair.tasks[0]} and {pair.tasks[1]}: {files}")
        verification = merge.verification
        excluded = set(verification.excluded) if verification else set()
        held = [n for n in merge.not_merged if n not in {c.task for c in merge.conflicts} and n not in excluded]
        if held:
            lines.append(f"  not merged: {', '.join(held)}")
        if verification is not None:
            code = f", exit code {verification.exit_code}" if verification.exit_code is not None else ""
            lines.append(f"verify: {verification.phase}{code} on {(verification.commit or '')[:10]} "
                         f"({len(verification.runs)} runs)")
            for c in verification.culprits:
                passed = c.last_passed.tasks[-1] if c.last_passed.tasks else "the base"
                lines.append(f"  culprit: task {c.task}: passes up to {passed} ({c.last_passed.commit[:10]}), "
                             f"fails with {c.task} ({c.first_failed.commit[:10]})")
            if verification.excluded:
                lines.append(f"  not merged [VerificationFailed]: {', '.join(verification.excluded)}")
            for line in (verification.output or "").splitlines()[-5:]:
                lines.append(f"  | {line}")
        if (pr := merge.pull_request) is not None:
            if pr.phase == "Failed":
                lines.append(f"pull request ({pr.provider}): failed: {pr.message or ''}")
            else:
                lines.append(f"pull request ({pr.provider}): #{pr.number} {(pr.action or '').lower()}"
                             + (f": {pr.url}" if pr.url else ""))
    lines.append(f"phase: {status.phase}")
    return "\n".join(lines)
