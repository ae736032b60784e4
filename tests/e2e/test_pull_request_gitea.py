"""spec.delivery.pullRequest against a real Gitea server (built by hack/gitea.sh), through gitea-api-client:
opened once, updated by a re-run, never duplicated; the token shows nowhere."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from braid.api import Conflict, ConflictFile, MergeRequest, MergeStatus, Verification
from braid.delivery import deliver, marker
from braid.delivery.forges import Gitea as GiteaForge
from braid.delivery.pullrequest import sync
from forge_gitea import USER, Gitea
from localrun import git, make_origin

HEAD = "braid/nightly/merged"


def repository(gitea: Gitea, tmp_path: Path, name: str) -> None:
    """`name` on the server with a main branch and the integration branch one commit ahead."""
    gitea.create_repo(name)
    local = make_origin(tmp_path / name, {"README.md": "# app\n"})
    git(local, "checkout", "--quiet", "-b", HEAD)
    (local / "api.txt").write_text("api\n")
    git(local, "add", "--all")
    git(local, "commit", "--quiet", "-m", "merged")
    git(local, "push", "--quiet", gitea.push_url(name), "main", HEAD)


def request(gitea: Gitea, name: str, **pull_request: object) -> MergeRequest:
    return MergeRequest.model_validate({
        "run": "nightly", "repo": {"url": f"{gitea.url}/{USER}/{name}.git"}, "integrationBranch": HEAD,
        "tasks": [{"name": "api", "branch": "braid/nightly/tasks/api"}], "notMerged": ["ui"],
        "pullRequest": {"provider": "gitea", "url": gitea.url, "repository": f"{USER}/{name}", **pull_request},
        "costs": [{"task": "api", "phase": "Succeeded", "costUSD": 0.0375, "tokens": 1234},
                  {"task": "ui", "phase": "Succeeded", "costUSD": 0.5, "tokens": 99}],
    })


def report(verified: str = "Passed") -> MergeStatus:
    return MergeStatus(
        phase="Conflicted", branch=HEAD, merged=["api"], not_merged=["ui"], commit="a" * 40,
        conflicts=[Conflict(task="ui", collides_with=["api"],
                            files=[ConflictFile(path="src/app.py", kind="content", collides_with=["api"])])],
        resolved=[Conflict(task="api", files=[ConflictFile(path="CHANGELOG.md", kind="content",
                                                            resolution="union (spec.merge.resolve)")])],
        verification=Verification(phase=verified, exit_code=0 if verified == "Passed" else 1, commit="a" * 40))


def test_opened_then_updated_by_a_rerun_never_a_second(gitea: Gitea, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    repository(gitea, tmp_path, "app")
    caplog.set_level(logging.DEBUG)
    first = deliver(request(gitea, "app"), report(), gitea.token)
    assert (first.phase, first.action) == ("Succeeded", "Opened"), first.message
    [pr] = gitea.pulls("app")
    assert pr["number"] == first.number and pr["html_url"] == first.url
    assert (pr["head"]["ref"], pr["base"]["ref"], pr["title"], pr["state"]) == (HEAD, "main", "braid: nightly", "open")
    body = pr["body"]
    assert body.startswith(marker("nightly"))
    assert "| `api` | Succeeded | yes | 0.0375 | 1234 |" in body
    assert "| `ui` | Succeeded | no | 0.5000 | 99 |" in body
    assert "`src/app.py` (content), also changed by api" in body
    assert "`CHANGELOG.md` (content): union (spec.merge.resolve)" in body
    assert "**Passed**, exit code 0" in body

    # the same report again: nothing to change
    again = deliver(request(gitea, "app"), report(), gitea.token)
    assert (again.action, again.number) == ("Unchanged", first.number)

    # a re-run with another outcome, and a title someone changed by hand: the same pull request, updated
    gitea.api("PATCH", f"/repos/{USER}/app/pulls/{first.number}", {"title": "renamed by a reviewer"})
    rerun = deliver(request(gitea, "app", title="Nightly integration"), report("Failed"), gitea.token)
    assert (rerun.phase, rerun.action, rerun.number) == ("Succeeded", "Updated", first.number), rerun.message
    [pr] = gitea.pulls("app")
    assert pr["title"] == "Nightly integration"
    assert "**Failed**, exit code 1" in pr["body"]
    assert len(gitea.pulls("app", "all")) == 1

    # the token is in no status, no log line
    seen = json.dumps([first.wire(), again.wire(), rerun.wire()]) + caplog.text
    assert gitea.token not in seen


def test_draft_and_a_create_race(gitea: Gitea, tmp_path: Path) -> None:
    repository(gitea, tmp_path, "drafts")
    done = deliver(request(gitea, "drafts", draft=True), report(), gitea.token)
    assert done.action == "Opened", done.message
    [pr] = gitea.pulls("drafts")
    assert pr["title"] == "WIP: braid: nightly"
    assert deliver(request(gitea, "drafts", draft=True), report(), gitea.token).action == "Unchanged"

    # Gitea refuses a second one from the same head into the same base (409): what braid meets when
    # another merge opened it between braid's look and its create; braid then updates that one
    forge = GiteaForge(request(gitea, "drafts").pull_request, gitea.token)
    looked = forge.open_from

    calls = {"n": 0}

    def blind(head: str):
        calls["n"] += 1
        return [] if calls["n"] == 1 else looked(head)

    forge.open_from = blind  # type: ignore[method-assign]
    action, pr_now = sync(forge, "gitea", "nightly", HEAD, "main", "braid: nightly", marker("nightly") + "\nnew", False)
    assert (action, pr_now.number) == ("Updated", done.number)
    assert len(gitea.pulls("drafts", "all")) == 1


def test_a_bad_token_fails_the_delivery_with_a_clean_message(gitea: Gitea, tmp_path: Path) -> None:
    repository(gitea, tmp_path, "refused")
    bad = "not-the-token-0123456789abcdef"
    failed = deliver(request(gitea, "refused"), report(), bad)
    assert failed.phase == "Failed"
    assert "401" in failed.message and bad not in failed.message
    assert gitea.pulls("refused") == []
