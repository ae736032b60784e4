"""spec.delivery.pullRequest: the API, the body rendered from the report, the find-or-open rules, the plan's
part (what the merge is asked, the Events), the merge Job's token file. No forge here: tests/e2e has those."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from braid.api import (
    AgentTaskStatus,
    Conflict,
    ConflictFile,
    ConflictRisk,
    Culprit,
    MergeRequest,
    MergeStatus,
    ParallelRun,
    PullRequestSpec,
    PullRequestStatus,
    RiskFile,
    Usage,
    Verification,
    VerifiedPrefix,
)
from braid.delivery import MAX_BODY, deliver, is_ours, marker, render_body
from braid.delivery.body import truncate
from braid.delivery.forges import Duplicate, PullRequest
from braid.delivery.pullrequest import sync
from braid.kube import merge_job
from braid.plan import TaskView, merge_request, step
from braid.settings import Settings

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TOKEN = "glpat-unit-0123456789abcdef"


def make_run(delivery: dict[str, Any] | None = None) -> ParallelRun:
    spec: dict[str, Any] = {"repo": {"url": "https://git.example.com/acme/app.git", "baseRef": "develop"},
                            "tasks": [{"name": "api", "prompt": "p"}, {"name": "ui", "prompt": "p"},
                                      {"name": "docs", "prompt": "p"}]}
    if delivery is not None:
        spec["delivery"] = delivery
    return ParallelRun.model_validate({"apiVersion": "braid.dev/v1alpha1", "kind": "ParallelRun",
                                       "metadata": {"name": "r", "namespace": "team", "generation": 1}, "spec": spec})


PR = {"pullRequest": {"provider": "github", "repository": "acme/app", "tokenSecret": {"name": "forge"}}}


# -- the API ------------------------------------------------------------------------------------


def test_github_needs_no_url_the_others_do() -> None:
    spec = PullRequestSpec.model_validate({"provider": "github", "repository": "acme/app"})
    assert spec.api_url == "https://api.github.com"
    assert spec.draft is False and spec.base is None and spec.title is None
    for provider in ("gitlab", "gitea"):
        with pytest.raises(ValidationError, match="spec.delivery.pullRequest.url is required for provider " + provider):
            PullRequestSpec.model_validate({"provider": provider, "repository": "acme/app"})
    gitlab = PullRequestSpec.model_validate({"provider": "gitlab", "url": "https://gitlab.example.com/",
                                             "repository": "group/sub/app"})
    assert gitlab.api_url == "https://gitlab.example.com"


@pytest.mark.parametrize("field,value", [
    ("repository", "app"), ("repository", "acme/app name"), ("repository", "../x"),
    ("url", "ftp://forge.example.com"), ("url", "https://user:pw@forge.example.com"),
    ("base", "-main"), ("base", "refs/heads/main"), ("provider", "bitbucket"),
])
def test_bad_fields_are_refused(field: str, value: str) -> None:
    data = {"provider": "gitea", "url": "https://gitea.example.com", "repository": "acme/app", field: value}
    with pytest.raises(ValidationError):
        PullRequestSpec.model_validate(data)


def test_the_spec_takes_delivery_and_the_wire_is_camel_case() -> None:
    run = make_run({"pullRequest": {"provider": "gitea", "url": "https://gitea.example.com", "repository": "acme/app",
                                    "base": "main", "title": "Nightly", "draft": True,
                                    "tokenSecret": {"name": "forge", "key": "api-token"}}})
    pr = run.spec.delivery.pull_request
    assert pr.token_secret.key == "api-token"
    assert run.wire()["spec"]["delivery"]["pullRequest"]["tokenSecret"] == {"name": "forge", "key": "api-token"}


# -- the plan -----------------------------------------------------------------------------------


def ended(phase: str, cost: float, tokens: int) -> TaskView:
    return TaskView(status=AgentTaskStatus(phase=phase, attempts=1, commit="c" * 40, finished_at="2026-01-02T03:04:05Z",
                                           usage=Usage(cost_usd=cost, input_tokens=tokens, output_tokens=1)))


def test_the_merge_is_asked_for_the_pull_request_with_every_tasks_cost() -> None:
    run = make_run(PR)
    tasks = {"api": ended("Succeeded", 0.25, 100), "ui": ended("Failed", 0.5, 200), "docs": ended("Succeeded", 0, 9)}
    decided = step(run, tasks, None, NOW)
    request = decided.merge
    assert request is not None and request.pull_request == run.spec.delivery.pull_request
    assert [(c.task, c.phase, c.cost_usd, c.tokens) for c in request.costs] == [
        ("api", "Succeeded", 0.25, 101), ("ui", "Failed", 0.5, 201), ("docs", "Succeeded", 0, 10)]
    # no delivery: nothing asked
    assert merge_request(make_run(), {"api"}).pull_request is None


@pytest.mark.parametrize("pr,reason,kind", [
    (PullRequestStatus(provider="github", phase="Succeeded", action="Opened", number=7, url="https://f/pull/7"),
     "PullRequestOpened", "Normal"),
    (PullRequestStatus(provider="github", phase="Succeeded", action="Updated", number=7), "PullRequestUpdated", "Normal"),
    (PullRequestStatus(provider="gitlab", phase="Failed", message="401 Unauthorized"), "PullRequestFailed", "Warning"),
])
def test_the_run_tells_of_the_pull_request_in_an_event(pr: PullRequestStatus, reason: str, kind: str) -> None:
    run = make_run(PR)
    tasks = {name: ended("Succeeded", 0, 1) for name in ("api", "ui", "docs")}
    merged = MergeStatus(phase="Succeeded", branch="braid/r/merged", merged=["api", "ui", "docs"], commit="d" * 40,
                         pull_request=pr)
    decided = step(run, tasks, merged, NOW)
    [event] = [e for e in decided.events if e.reason.startswith("PullRequest")]
    assert (event.type, event.reason) == (kind, reason)
    # a failed delivery fails neither the merge nor the run
    assert decided.status.phase == "Succeeded"
    assert decided.status.merge.pull_request == pr


def test_the_merge_job_mounts_the_token_as_a_file_of_the_merge_container_only() -> None:
    run = make_run({"pullRequest": {**PR["pullRequest"], "tokenSecret": {"name": "forge", "key": "api-token"}}})
    data = run.wire()
    data["spec"]["merge"] = {"verify": {"command": ["make", "test"]}}
    run = ParallelRun.model_validate(data)
    job = merge_job(run, merge_request(run, {"api"}), Settings())
    spec = job["spec"]["template"]["spec"]
    [merge] = spec["containers"]
    [verify] = spec["initContainers"]
    i = merge["command"].index("--pr-token-file")
    assert merge["command"][i + 1] == "/var/run/secrets/braid/pull-request/token"
    assert {"name": "pr-token", "mountPath": "/var/run/secrets/braid/pull-request", "readOnly": True} \
        in merge["volumeMounts"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "pr-token"]
    assert volume["secret"]["secretName"] == "forge"
    assert volume["secret"]["items"] == [{"key": "api-token", "path": "token"}]
    assert "pr-token" not in {m["name"] for m in verify["volumeMounts"]}
    # no value of the Secret anywhere in the Job, only where it is mounted
    assert not any("token" in e["name"].lower() for e in merge["env"])
    no_pr = merge_job(make_run(), merge_request(make_run(), {"api"}), Settings())["spec"]["template"]["spec"]
    assert "--pr-token-file" not in no_pr["containers"][0]["command"]


# -- the body -----------------------------------------------------------------------------------


def report() -> tuple[MergeRequest, MergeStatus]:
    run = make_run(PR)
    tasks = {"api": ended("Succeeded", 0.125, 1000), "ui": ended("Succeeded", 2.5, 50), "docs": ended("Failed", 0, 0)}
    request = step(run, tasks, None, NOW).merge
    assert request is not None
    status = MergeStatus(
        phase="Conflicted", branch="braid/r/merged", merged=["api"], not_merged=["docs", "ui"], commit="e" * 40,
        conflicts=[Conflict(task="ui", collides_with=["api"], files=[
            ConflictFile(path="src/app|main.py", kind="content", collides_with=["api"])])],
        resolved=[Conflict(task="api", files=[ConflictFile(path="CHANGELOG.md", kind="content",
                                                            resolution="union (spec.merge.resolve)")])],
        left_out_conflicts=[ConflictRisk(tasks=["docs", "ui"], files=[RiskFile(path="README.md", kind="content")])],
        verification=Verification(phase="Failed", exit_code=3, commit="e" * 40, output="FAILED test_x\n```\n",
                                  culprits=[Culprit(task="api", last_passed=VerifiedPrefix(commit="1" * 40),
                                                    first_failed=VerifiedPrefix(tasks=["api"], commit="2" * 40))]))
    return request, status


def test_the_body_tells_tasks_costs_conflicts_resolutions_and_verification() -> None:
    request, status = report()
    body = render_body(request, status, "develop")
    assert body.startswith(marker("r") + "\n")
    assert is_ours(body, "r") and not is_ours(body, "other") and not is_ours("text\n" + marker("r"), "r")
    assert "| `api` | Succeeded | yes | 0.1250 | 1001 |" in body
    assert "| `ui` | Succeeded | no | 2.5000 | 51 |" in body
    assert "| `docs` | Failed | no | 0.0000 | 1 |" in body
    assert "| **total** | | 1 | 2.6250 | 1053 |" in body
    assert "`src/app|main.py` (content), also changed by api" in body
    # a backtick in a path does not end its code span early
    tricky = status.model_copy(update={"conflicts": [Conflict(task="ui", files=[
        ConflictFile(path="a`b", kind="content")])]})
    assert "- ``a`b`` (content)" in render_body(request, tricky, "develop").replace("  - ", "- ")
    assert "`CHANGELOG.md` (content): union (spec.merge.resolve)" in body
    assert "`docs` and `ui`: `README.md` (content)" in body
    assert "**Failed**, exit code 3" in body
    assert "culprit `api`" in body
    # the output's own fence does not end the block early
    assert "````text\nFAILED test_x\n```\n\n````" in body
    assert "`braid/r/merged` at `eeeeeeeeeeee` into `develop`" in body


def test_a_clean_run_says_so() -> None:
    request, status = report()
    status = MergeStatus(phase="Succeeded", merged=["api"], commit="e" * 40)
    body = render_body(request, status, "develop")
    assert "### Conflicts\n\nNone." in body
    assert "Not configured (spec.merge.verify)." in body


def test_a_long_body_is_cut_with_a_note() -> None:
    request, status = report()
    status.conflicts = [Conflict(task="ui", files=[ConflictFile(path=f"f{i:05}.txt" * 20, kind="content")
                                                   for i in range(2000)])]
    body = render_body(request, status, "develop")
    assert len(body) <= MAX_BODY
    assert body.rstrip().endswith("_Truncated: the whole report is status.merge of ParallelRun r._")
    assert body.startswith(marker("r"))
    assert truncate("short", "r") == "short"


# -- find or open -------------------------------------------------------------------------------


class MemoryForge:
    """The Forge interface over a list, refusing a second open one from the same head into the same base."""

    def __init__(self) -> None:
        self.pulls: list[PullRequest] = []
        self.race = False
        self.edits = 0

    def open_from(self, head: str) -> list[PullRequest]:
        return [p for p in self.pulls if p.head == head]

    def create(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest:
        if self.race:
            self.race = False
            self.pulls.append(PullRequest(len(self.pulls) + 1, None, "theirs", "", head, base))
        if any(p.head == head and p.base == base for p in self.pulls):
            raise Duplicate("A pull request already exists")
        pr = PullRequest(len(self.pulls) + 1, None, ("WIP: " if draft else "") + title, body, head, base)
        self.pulls.append(pr)
        return pr

    def edit(self, pr: PullRequest, title: str, body: str, base: str) -> PullRequest:
        self.edits += 1
        new = replace(pr, title=title, body=body, base=base)
        self.pulls[self.pulls.index(pr)] = new
        return new


BODY = marker("r") + "\nreport"


def test_open_then_unchanged_then_updated_never_a_second() -> None:
    forge = MemoryForge()
    assert sync(forge, "github", "r", "braid/r/merged", "main", "t", BODY, False)[0] == "Opened"
    assert sync(forge, "github", "r", "braid/r/merged", "main", "t", BODY, False)[0] == "Unchanged"
    assert forge.edits == 0
    action, pr = sync(forge, "github", "r", "braid/r/merged", "main", "t", BODY + " v2", False)
    assert (action, pr.number, pr.body) == ("Updated", 1, BODY + " v2")
    assert len(forge.pulls) == 1


def test_a_renamed_title_and_crlf_body_still_match_and_the_draft_prefix_is_kept() -> None:
    forge = MemoryForge()
    forge.pulls.append(PullRequest(3, None, "someone renamed it", BODY.replace("\n", "\r\n"), "braid/r/merged", "main"))
    action, pr = sync(forge, "github", "r", "braid/r/merged", "main", "braid: r", BODY, False)
    assert (action, pr.number, pr.title) == ("Updated", 3, "braid: r")
    forge = MemoryForge()
    sync(forge, "gitea", "r", "braid/r/merged", "main", "braid: r", BODY, True)
    assert forge.pulls[0].title == "WIP: braid: r"
    assert sync(forge, "gitea", "r", "braid/r/merged", "main", "braid: r", BODY, True)[0] == "Unchanged"


def test_a_changed_base_moves_braids_own_pull_request() -> None:
    forge = MemoryForge()
    sync(forge, "github", "r", "braid/r/merged", "main", "t", BODY, False)
    action, pr = sync(forge, "github", "r", "braid/r/merged", "release", "t", BODY, False)
    assert (action, pr.number, pr.base) == ("Updated", 1, "release")
    assert len(forge.pulls) == 1


def test_a_create_race_updates_the_one_the_other_opened() -> None:
    forge = MemoryForge()
    forge.race = True
    action, pr = sync(forge, "github", "r", "braid/r/merged", "main", "t", BODY, False)
    assert (action, pr.number, pr.title, pr.body) == ("Updated", 1, "t", BODY)
    assert len(forge.pulls) == 1


def test_no_token_or_a_failing_forge_is_reported_never_raised_and_the_token_is_cleared() -> None:
    request, status = report()
    assert request.pull_request is not None
    missing = deliver(request, status, None)
    assert missing.phase == "Failed" and "--pr-token-file" in missing.message

    class Leaky(Exception):
        pass

    def boom(*_: Any) -> None:
        raise Leaky(f"401 for Authorization: token {TOKEN}")

    import braid.delivery.pullrequest as pullrequest

    mp = pytest.MonkeyPatch()
    mp.setattr(pullrequest, "open_forge", boom)
    try:
        failed = deliver(request, status, TOKEN, redact=lambda s: s.replace("401", "four-oh-one"))
    finally:
        mp.undo()
    assert failed.phase == "Failed"
    assert TOKEN not in failed.message and "[REDACTED]" in failed.message and "four-oh-one" in failed.message
    assert failed.wire()["provider"] == "github"


# -- the token's way in ------------------------------------------------------------------------


def test_the_token_comes_from_a_file_or_the_environment_which_then_forgets_it(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from braid.cli import _pr_token
    from braid.local.engine import agent_run_env

    monkeypatch.setenv("BRAID_PR_TOKEN", TOKEN)
    assert "BRAID_PR_TOKEN" not in agent_run_env({"BRAID_PR_TOKEN": TOKEN, "BRAID_X": "1"})
    assert _pr_token(None) == TOKEN
    import os

    assert "BRAID_PR_TOKEN" not in os.environ
    assert _pr_token(None) is None
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    monkeypatch.setenv("BRAID_PR_TOKEN", "ignored-when-a-file-is-given")
    assert _pr_token(str(path)) == TOKEN
    assert "BRAID_PR_TOKEN" not in os.environ
    with pytest.raises(SystemExit, match="--pr-token-file"):
        _pr_token(str(tmp_path / "missing"))
