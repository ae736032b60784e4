"""spec.delivery.pullRequest: open one pull request from the integration branch, or update braid's own."""

from __future__ import annotations

import logging
from collections.abc import Callable

from braid.api import MergeRequest, MergeStatus, PullRequestStatus

from .body import is_ours, render_body
from .forges import Duplicate, Forge, PullRequest, describe, draft_prefixes, open_forge

log = logging.getLogger("braid.delivery")
MAX_MESSAGE = 1000


def _norm(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def _pick(candidates: list[PullRequest], base: str, run: str) -> PullRequest | None:
    """braid's own among the open pull requests from the integration branch: the one into `base` carrying
    this run's marker, else any into `base` (the forge allows one), else one with the marker into another
    base (spec.delivery.pullRequest.base changed: it is moved)."""
    for match in (lambda p: p.base == base and is_ours(p.body, run), lambda p: p.base == base,
                  lambda p: is_ours(p.body, run)):
        for pr in sorted(candidates, key=lambda p: p.number):
            if match(pr):
                return pr
    return None


def _title_kept(provider: str, wanted: str, existing: str) -> str:
    """A draft prefix someone (or braid, at creation) put on the title is kept: marking it ready is theirs."""
    for prefix in draft_prefixes(provider):
        if existing.startswith(prefix) and not wanted.startswith(prefix) and existing[len(prefix):].strip() == wanted:
            return existing
    return wanted


def sync(forge: Forge, provider: str, run: str, head: str, base: str, title: str, body: str,
         draft: bool) -> tuple[str, PullRequest]:
    """Make the one open pull request from `head` say `title` and `body`: (Opened | Updated | Unchanged, it)."""
    found = _pick(forge.open_from(head), base, run)
    if found is None:
        try:
            return "Opened", forge.create(head, base, title, body, draft)
        except Duplicate:
            # another merge opened it between our look and our create: update that one
            found = _pick(forge.open_from(head), base, run)
            if found is None:
                raise
    title = _title_kept(provider, title, found.title)
    if found.title == title and _norm(found.body) == _norm(body) and found.base == base:
        return "Unchanged", found
    return "Updated", forge.edit(found, title, body, base)


def deliver(request: MergeRequest, status: MergeStatus, token: str | None,
            redact: Callable[[str], str] | None = None) -> PullRequestStatus:
    """Open or update the pull request of request.pull_request. Never raises: a failure is the returned
    status's message, cleared of the token (and of whatever `redact` clears)."""
    spec = request.pull_request
    assert spec is not None
    base = spec.base or request.repo.base_ref
    title = spec.title or f"braid: {request.run}"

    def clean(text: str) -> str:
        if token:
            text = text.replace(token, "[REDACTED]")
        text = redact(text) if redact is not None else text
        return text[:MAX_MESSAGE]

    if not token:
        return PullRequestStatus(provider=spec.provider, phase="Failed", message=(
            "no token for spec.delivery.pullRequest (cluster: tokenSecret; local: --pr-token-file or $BRAID_PR_TOKEN)"))
    try:
        forge = open_forge(spec, token)
        action, pr = sync(forge, spec.provider, request.run, request.integration_branch, base, title,
                          render_body(request, status, base), spec.draft)
    except Exception as exc:  # any failure of the forge or its library is reported, never raised
        message = clean(describe(exc).replace("\n", " "))
        log.error("pull request not delivered: %s", message, exc_info=log.isEnabledFor(logging.DEBUG))
        return PullRequestStatus(provider=spec.provider, phase="Failed", message=message)
    log.info("pull request #%s %s: %s", pr.number, action.lower(), pr.url or "")
    return PullRequestStatus(provider=spec.provider, phase="Succeeded", action=action, number=pr.number, url=pr.url,
                             message=clean(f"{action.lower()} #{pr.number} from {request.integration_branch} "
                                           f"into {base}"))
