"""`braid run --local` with spec.delivery.pullRequest against a real Gitea server: the first run opens the pull
request, a re-run updates it; there is only ever one, and the token reaches no agent, status or output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from forge_gitea import USER, Gitea
from localrun import Workspace, git, make_origin, manifest, script_task

FLAKY = ["sh", "-c", 'echo "${BRAID_PR_TOKEN:-absent}" > token-seen.txt; echo work >> work.txt; '
         'if [ "$(wc -l < work.txt)" -eq 1 ]; then exit 3; fi']


def test_a_run_opens_the_pull_request_and_a_rerun_updates_it(ws: Workspace, gitea: Gitea, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url = gitea.create_repo("local")
    seed = make_origin(tmp_path / "seed", {"README.md": "# app\n"})
    git(seed, "push", "--quiet", gitea.push_url("local"), "main")
    creds = gitea.credentials_dir(tmp_path / "creds")
    tasks = [script_task("api", [{"op": "write", "path": "api.txt", "content": "api\n"}]),
             {"name": "flaky", "prompt": "p", "agent": {"backend": "command", "command": FLAKY}}]
    data = manifest("deliver", Path("unused"), tasks)
    data["spec"]["repo"] = {"url": url}
    data["spec"]["delivery"] = {"pullRequest": {"provider": "gitea", "url": gitea.url,
                                                "repository": f"{USER}/local", "title": "Deliver"}}
    run_file = ws.write(data)

    # first run: the token from the environment; flaky fails, api is merged and the pull request opened
    monkeypatch.setenv("BRAID_PR_TOKEN", gitea.token)
    first = ws.run(run_file, "--credentials-dir", str(creds), timeout=240)
    assert first.code == 1, first.stderr
    pr = first.status["merge"]["pullRequest"]
    assert (pr["provider"], pr["phase"], pr["action"]) == ("gitea", "Succeeded", "Opened"), pr
    [opened] = gitea.pulls("local")
    assert opened["number"] == pr["number"] and opened["title"] == "Deliver"
    assert (opened["head"]["ref"], opened["base"]["ref"]) == ("braid/deliver/merged", "main")
    assert "| `api` | Succeeded | yes |" in opened["body"]
    assert "| `flaky` | Failed | no |" in opened["body"]
    assert f"pull request (gitea): #{pr['number']} opened: {opened['html_url']}" in first.stdout

    # the re-run: the token from a file; flaky now succeeds and the same pull request says so
    monkeypatch.delenv("BRAID_PR_TOKEN")
    token_file = tmp_path / "pr-token"
    token_file.write_text(gitea.token + "\n")
    second = ws.run(run_file, "--credentials-dir", str(creds), "--pr-token-file", str(token_file), timeout=240)
    assert second.code == 0, second.stderr
    pr2 = second.status["merge"]["pullRequest"]
    assert (pr2["phase"], pr2["action"], pr2["number"]) == ("Succeeded", "Updated", pr["number"]), pr2
    [updated] = gitea.pulls("local", "all")
    assert "| `flaky` | Succeeded | yes |" in updated["body"]
    assert updated["body"] != opened["body"]

    # no agent saw the token; it is in no status and no output of braid's
    seen = git(tmp_path / "seed", "ls-remote", url)
    assert "braid/deliver/tasks/flaky" in seen
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--branch", "braid/deliver/merged", url, str(clone))
    assert (clone / "token-seen.txt").read_text() == "absent\n"
    for out in (first, second):
        assert gitea.token not in out.stdout + out.stderr + json.dumps(out.status)
    events = [e for e in (ws.root / "state").rglob("*") if e.is_file()]
    for path in events:
        assert gitea.token.encode() not in path.read_bytes(), path
