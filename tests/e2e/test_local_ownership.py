"""`braid run --local` overwrites only what it wrote: task branches and the integration branch that
someone else made or moved are left as they are, and a branch with unrelated history is not merged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from localrun import Workspace, branches, git, make_origin, manifest, script_task, show


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin", {"README.md": "# app\n"})


def write(name: str) -> dict:
    return script_task(name, [{"op": "write", "path": f"{name}.txt", "content": f"{name}\n"}])


def commit_on(origin: Path, branch: str, files: dict[str, str], message: str, start: str | None = None) -> str:
    """Someone else's commit on `branch` of `origin` (created from `start` when given)."""
    git(origin, "checkout", "--quiet", *(["-B", branch, start] if start else [branch]))
    for name, text in files.items():
        (origin / name).write_text(text)
    git(origin, "add", "--all")
    git(origin, "commit", "--quiet", "-m", message)
    head = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "--quiet", "main")
    return head


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", ancestor, descendant],
                          capture_output=True, check=False).returncode == 0


def fail_once(name: str) -> dict:
    """Fails its first attempt only: a resumed attempt finds the first line already pushed."""
    cmd = ["sh", "-c", f'echo {name} >> {name}.txt; if [ "$(wc -l < {name}.txt)" -eq 1 ]; then exit 3; fi']
    return {"name": name, "prompt": "p", "agent": {"backend": "command", "command": cmd}}


def test_a_task_branch_someone_else_made_fails_that_task_and_the_rest_merges(ws: Workspace, origin: Path) -> None:
    theirs = commit_on(origin, "braid/own/tasks/b", {"theirs.txt": "not braid's\n"}, "their work", start="main")
    data = manifest("own", origin, [write("a"), write("b"), write("c")], retry={"limit": 2, "backoffSeconds": 0})
    result = ws.run(ws.write(data))

    assert result.code == 1, result.stderr
    tasks = result.status["tasks"]
    assert (tasks["b"]["phase"], tasks["b"]["reason"], tasks["b"]["attempts"]) == ("Failed", "BranchExists", 1)
    assert "braid/own/tasks/b" in tasks["b"]["message"] and theirs[:12] in tasks["b"]["message"]
    assert "delete the branch" in tasks["b"]["message"]
    assert branches(origin)["braid/own/tasks/b"] == theirs  # untouched
    assert tasks["a"]["phase"] == tasks["c"]["phase"] == "Succeeded"
    merge = result.status["merge"]
    assert (merge["phase"], merge["merged"], merge["notMerged"]) == ("Succeeded", ["a", "c"], ["b"])
    assert show(origin, "braid/own/merged", "theirs.txt") is None
    assert (result.status["phase"], result.status["reason"]) == ("Failed", "TasksFailed")
    assert "BranchExists" in result.stdout


def test_a_rerun_does_not_resume_a_task_branch_that_moved_since_braid_pushed_it(ws: Workspace, origin: Path,
                                                                                 tmp_path: Path) -> None:
    run_file = ws.write(manifest("moved", origin, [fail_once("t")]))
    first = ws.run(run_file)
    assert first.status["tasks"]["t"]["phase"] == "Failed"
    pushed = first.status["tasks"]["t"]["commit"]
    assert branches(origin)["braid/moved/tasks/t"] == pushed

    theirs = commit_on(origin, "braid/moved/tasks/t", {"theirs.txt": "t\n"}, "on top of braid's")
    second = ws.run(run_file)
    assert second.code == 1
    line = second.status["tasks"]["t"]
    assert (line["phase"], line["reason"]) == ("Failed", "BranchExists")
    assert theirs[:12] in line["message"] and pushed[:12] in line["message"]
    assert branches(origin)["braid/moved/tasks/t"] == theirs
    assert "braid/moved/merged" not in branches(origin)


def test_a_rerun_replaces_the_integration_branch_braid_pushed_and_nothing_else(ws: Workspace, origin: Path,
                                                                               tmp_path: Path) -> None:
    tasks = [fail_once("a"), write("z")]
    run_file = ws.write(manifest("again", origin, tasks))
    first = ws.run(run_file)
    assert first.status["merge"]["merged"] == ["z"]
    pushed = first.status["merge"]["commit"]
    assert first.status["merge"]["lastPushed"] == pushed == branches(origin)["braid/again/merged"]

    # a now merges first: the new result does not build on the old one, and replaces it
    second = ws.run(run_file)
    assert second.code == 0, second.stderr + second.stdout
    merge = second.status["merge"]
    assert merge["merged"] == ["a", "z"]
    assert not is_ancestor(origin, pushed, merge["commit"])
    assert branches(origin)["braid/again/merged"] == merge["commit"] == merge["lastPushed"] != pushed

    # someone adds to the integration branch, with braid's trailer in the message
    theirs = commit_on(origin, "braid/again/merged", {"review.txt": "r\n"}, "review fixes\n\nBraid-Run: again")
    third = ws.run(ws.write(manifest("again", origin, [*tasks, write("m")])))
    assert third.code == 1
    merge = third.status["merge"]
    assert merge["phase"] == "Failed"
    assert merge["message"] == ("spec.integrationBranch: braid/again/merged already exists and holds commits braid "
                                f"did not write (tip {theirs[:12]}); delete it or choose another name")
    assert branches(origin)["braid/again/merged"] == theirs
    assert show(origin, "braid/again/merged", "review.txt") == "r\n"
    assert (third.status["phase"], third.status["reason"]) == ("Failed", "MergeFailed")


def test_a_task_branch_with_unrelated_history_is_not_merged_and_the_rest_is(ws: Workspace, origin: Path) -> None:
    # an agent that throws the history away and starts from nothing: possible only unconfined,
    # since in the sandbox its .git is read-only
    cmd = ["sh", "-c", "git checkout --quiet --orphan fresh && git rm -r -f --quiet . && echo x > x.txt"]
    tasks = [write("a"), {"name": "orphan", "prompt": "p", "agent": {"backend": "command", "command": cmd}},
             write("z")]
    result = ws.run(ws.write(manifest("unrelated", origin, tasks)), "--sandbox", "none")

    assert result.status is not None, result.stderr
    assert {n: t["phase"] for n, t in result.status["tasks"].items()} == dict.fromkeys(["a", "orphan", "z"],
                                                                                       "Succeeded")
    merge = result.status["merge"]
    assert merge["phase"] == "Conflicted", merge
    assert merge["merged"] == ["a", "z"] and merge["notMerged"] == ["orphan"]
    (conflict,) = merge["conflicts"]
    assert (conflict["task"], conflict["reason"]) == ("orphan", "UnrelatedHistory")
    assert "braid/unrelated/tasks/orphan" in conflict["message"]
    assert show(origin, "braid/unrelated/merged", "z.txt") == "z\n"
    assert show(origin, "braid/unrelated/merged", "x.txt") is None
    assert result.status["phase"] == "Conflicted" and result.code == 1
    assert "orphan not merged (UnrelatedHistory)" in result.status["message"]
    assert "not merged: task orphan [UnrelatedHistory]: branch braid/unrelated/tasks/orphan" in result.stdout
