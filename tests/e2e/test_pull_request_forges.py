"""spec.delivery.pullRequest on GitHub (PyGithub) and GitLab (python-gitlab), each against a local stand-in
of the forge's REST API (tests/fakes/forges.py): no GitHub or GitLab server can be run on this machine.
Opened once, updated by a re-run, never duplicated, draft honoured, a duplicate-create race handled."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braid.api import Conflict, ConflictFile, MergeRequest, MergeStatus, Verification
from braid.delivery import deliver, marker
from fakes.forges import ForgeAPI

TOKEN = "forge-token-standin-0123456789abcdef"
HEAD = "braid/nightly/merged"
KINDS = ["github", "gitlab"]


def request(api: ForgeAPI, **pull_request: object) -> MergeRequest:
    return MergeRequest.model_validate({
        "run": "nightly", "repo": {"url": "https://forge.example/acme/app.git", "baseRef": "develop"},
        "integrationBranch": HEAD, "tasks": [{"name": "api", "branch": "braid/nightly/tasks/api"}],
        "notMerged": ["ui"],
        "pullRequest": {"provider": api.kind, "url": api.url, "repository": api.repository, **pull_request},
        "costs": [{"task": "api", "phase": "Succeeded", "costUSD": 0.25, "tokens": 10},
                  {"task": "ui", "phase": "Failed", "costUSD": 0.75, "tokens": 20}],
    })


def report(verified: str = "Passed") -> MergeStatus:
    return MergeStatus(phase="Conflicted", branch=HEAD, merged=["api"], not_merged=["ui"], commit="b" * 40,
                       conflicts=[Conflict(task="ui", collides_with=["api"],
                                           files=[ConflictFile(path="app.py", kind="content")])],
                       verification=Verification(phase=verified, exit_code=0 if verified == "Passed" else 2))


def body_of(api: ForgeAPI, pr: dict) -> str:
    return pr["body"] if api.kind == "github" else pr["description"]


def title_of(pr: dict) -> str:
    return pr["title"]


@pytest.mark.parametrize("kind", KINDS)
def test_opened_then_updated_never_a_second(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ForgeAPI(kind, TOKEN, "acme/app") as api:
        first = deliver(request(api), report(), TOKEN)
        assert (first.phase, first.action, first.number) == ("Succeeded", "Opened", 1), first.message
        [pr] = api.open_pulls()
        body = body_of(api, pr)
        assert body.startswith(marker("nightly"))
        assert "| `ui` | Failed | no | 0.7500 | 20 |" in body and "`app.py` (content)" in body
        assert "**Passed**, exit code 0" in body
        assert title_of(pr) == "braid: nightly"
        base = pr["base"]["ref"] if kind == "github" else pr["target_branch"]
        assert base == "develop"  # spec.repo.baseRef by default

        assert deliver(request(api), report(), TOKEN).action == "Unchanged"
        rerun = deliver(request(api, title="Nightly"), report("Failed"), TOKEN)
        assert (rerun.action, rerun.number) == ("Updated", 1)
        [pr] = api.open_pulls()
        assert title_of(pr) == "Nightly" and "**Failed**, exit code 2" in body_of(api, pr)
        assert len(api.pulls) == 1
        creates = [r for r in api.requests if r.method == "POST"]
        assert len(creates) == 1
        # the token travels in the auth header only: not in a URL, a body, a status or a log line
        for r in api.requests:
            assert TOKEN not in r.path and TOKEN not in json.dumps(r.body)
        assert TOKEN not in json.dumps([first.wire(), rerun.wire()]) + caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_draft_is_honoured_and_kept(kind: str) -> None:
    with ForgeAPI(kind, TOKEN) as api:
        assert deliver(request(api, draft=True), report(), TOKEN).action == "Opened"
        [pr] = api.open_pulls()
        assert pr["draft"] is True
        if kind == "gitlab":
            assert title_of(pr) == "Draft: braid: nightly"
        assert deliver(request(api, draft=True), report(), TOKEN).action == "Unchanged"
        assert deliver(request(api, draft=True), report("Failed"), TOKEN).action == "Updated"
        [pr] = api.open_pulls()
        assert pr["draft"] is True


@pytest.mark.parametrize("kind", KINDS)
def test_a_create_race_updates_the_other_one(kind: str) -> None:
    with ForgeAPI(kind, TOKEN) as api:
        api.race_next_create = True
        done = deliver(request(api), report(), TOKEN)
        # the stand-in refused the create (GitHub 422, GitLab 409): braid looked again and updated that one
        assert (done.phase, done.action, done.number) == ("Succeeded", "Updated", 1), done.message
        assert len([r for r in api.requests if r.method == "POST"]) == 1
        [pr] = api.open_pulls()
        assert title_of(pr) == "braid: nightly" and body_of(api, pr).startswith(marker("nightly"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_closed_one_is_left_closed_and_a_new_one_opened(kind: str) -> None:
    with ForgeAPI(kind, TOKEN) as api:
        deliver(request(api), report(), TOKEN)
        api.pulls[0]["state"] = "closed"
        again = deliver(request(api), report(), TOKEN)
        assert (again.action, again.number) == ("Opened", 2)
        assert len(api.open_pulls()) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [401, 500])
def test_a_refusing_forge_fails_the_delivery_only(kind: str, status: int) -> None:
    with ForgeAPI(kind, TOKEN) as api:
        api.fail_with = status
        failed = deliver(request(api), report(), TOKEN)
        assert failed.phase == "Failed" and str(status) in failed.message
        assert TOKEN not in failed.message
        wrong = "wrong-token-0123456789abcdef"
        api.fail_with = None
        refused = deliver(request(api), report(), wrong)
        assert refused.phase == "Failed" and "401" in refused.message and wrong not in refused.message
        assert api.pulls == []
