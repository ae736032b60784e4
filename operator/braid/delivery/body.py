"""The pull request's body, rendered from the merge report: pure, no I/O."""

from __future__ import annotations

from braid.api import Conflict, MergeRequest, MergeStatus

MAX_BODY = 60_000
"""GitHub refuses bodies over 65 536 characters; the others allow more. The end is cut past this."""
MAX_OUTPUT = 2_000
"""Of the failing verify run's output, the last this many characters."""


def marker(run: str) -> str:
    """The body's first line: how braid knows a pull request as its own whatever its title became."""
    return f"<!-- braid-run: {run} -->"


def is_ours(body: str | None, run: str) -> bool:
    return (body or "").replace("\r\n", "\n").split("\n", 1)[0].strip() == marker(run)


def _code(text: str) -> str:
    """`text` as inline code, whatever backticks it holds (on one line: never in a table, where a '|'
    would end the cell; task names, the only code in the table, hold none)."""
    text = text.replace("\n", " ")
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _fenced(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text}\n{fence}"


def _files(conflict: Conflict, with_resolution: bool) -> list[str]:
    lines = []
    for f in conflict.files:
        line = f"  - {_code(f.path)} ({f.kind})"
        if f.collides_with:
            line += f", also changed by {', '.join(f.collides_with)}"
        if with_resolution and f.resolution:
            line += f": {f.resolution}"
        elif f.message:
            line += f": {f.message}"
        lines.append(line)
    return lines


def render_body(request: MergeRequest, status: MergeStatus, base: str) -> str:
    """Markdown: the tasks with their phase and cost, the conflicts and how each was resolved, the
    verification. At most MAX_BODY characters."""
    out = [marker(request.run), f"## braid run {_code(request.run)}", ""]
    commit = f" at {_code(status.commit[:12])}" if status.commit else ""
    out.append(f"Integration branch {_code(request.integration_branch)}{commit} into {_code(base)}: "
               f"merge {status.phase.lower()}, {_count(len(status.merged), 'task')} merged, {len(status.not_merged)} left out.")
    out += ["", "### Tasks", "", "| task | phase | merged | cost (USD) | tokens |", "|---|---|---|---:|---:|"]
    costs = {c.task: c for c in request.costs}
    names = list(costs) or [t.name for t in request.tasks] + list(request.not_merged)
    merged = set(status.merged)
    total_cost = total_tokens = 0.0
    for name in names:
        c = costs.get(name)
        phase = c.phase if c is not None else ("Succeeded" if name in {t.name for t in request.tasks} else "-")
        cost, tokens = (c.cost_usd, c.tokens) if c is not None else (0.0, 0)
        total_cost += cost
        total_tokens += tokens
        out.append(f"| {_code(name)} | {phase} | {'yes' if name in merged else 'no'} | {cost:.4f} | {tokens} |")
    out.append(f"| **total** | | {len(merged)} | {total_cost:.4f} | {int(total_tokens)} |")

    out += ["", "### Conflicts", ""]
    if not status.conflicts and not status.resolved and not status.left_out_conflicts:
        out.append("None.")
    if status.conflicts:
        out += ["Not merged because they conflict:", ""]
        for conflict in status.conflicts:
            with_ = f" with {', '.join(conflict.collides_with)}" if conflict.collides_with else ""
            why = f" ({conflict.reason})" if conflict.reason else ""
            said = f": {conflict.message}" if conflict.message and not conflict.files else ""
            out.append(f"- {_code(conflict.task)}{with_}{why}{said}")
            out += _files(conflict, with_resolution=False)
    if status.resolved:
        out += ["", "Resolved, and merged:", ""]
        for conflict in status.resolved:
            with_ = f" with {', '.join(conflict.collides_with)}" if conflict.collides_with else ""
            out.append(f"- {_code(conflict.task)}{with_}")
            out += _files(conflict, with_resolution=True)
    if status.left_out_conflicts:
        out += ["", "Left-out tasks that also conflict with each other:", ""]
        for pair in status.left_out_conflicts:
            files = ", ".join(f"{_code(f.path)} ({f.kind})" for f in pair.files) or "unknown files"
            out.append(f"- {_code(pair.tasks[0])} and {_code(pair.tasks[1])}: {files}")

    out += ["", "### Verification", ""]
    v = status.verification
    if v is None:
        out.append("Not configured (spec.merge.verify)." if request.verify is None else "Not run: nothing was merged.")
    else:
        exit_code = f", exit code {v.exit_code}" if v.exit_code is not None else ""
        at = f" at {_code(v.commit[:12])}" if v.commit else ""
        out.append(f"**{v.phase}**{exit_code}{at}, {_count(len(v.runs), 'run')}, {v.duration_seconds:.1f}s.")
        if v.message:
            out.append(f"{v.message}.")
        for found in v.culprits:
            excluded = f"; not merged: {', '.join(found.excluded)}" if found.excluded else ""
            out.append(f"- culprit {_code(found.task)}: passes with {len(found.last_passed.tasks)} tasks "
                       f"({_code(found.last_passed.commit[:12])}), fails with it merged "
                       f"({_code(found.first_failed.commit[:12])}){excluded}")
        if v.phase != "Passed" and v.output:
            out += ["", "<details><summary>output (end)</summary>", "", _fenced(v.output[-MAX_OUTPUT:]), "",
                    "</details>"]
    out += ["", "_Opened and kept up to date by braid; re-running the run updates this pull request._"]
    return truncate("\n".join(out) + "\n", request.run)


def truncate(body: str, run: str, limit: int = MAX_BODY) -> str:
    if len(body) <= limit:
        return body
    note = f"\n\n_Truncated: the whole report is status.merge of ParallelRun {run}._\n"
    cut = body.rfind("\n", 0, limit - len(note))
    return body[: cut if cut > 0 else limit - len(note)] + note
