"""Working copies of local runs: a run that succeeds removes its own, `braid clean` lists and removes
those of finished runs whose work is pushed, and never what is not on the remote or still in use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from localrun import Workspace, branches, git, make_origin, manifest, script_task, show


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin", {"README.md": "# app\n"})


def write(name: str) -> dict:
    return script_task(name, [{"op": "write", "path": f"{name}.txt", "content": f"{name}\n"}])


def braid_clean(ws: Workspace, *args: str, state: bool = True) -> subprocess.CompletedProcess[str]:
    where = ["--state-dir", str(ws.state)] if state else []
    return subprocess.run([sys.executable, "-m", "braid", "clean", "--cache-dir", str(ws.cache), *where, *args],
                          capture_output=True, text=True, timeout=120, check=False)


def copies(ws: Workspace) -> list[str]:
    work = ws.state / "work"
    return sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) if work.is_dir() else []


def wait_for(what: str, condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_run_that_succeeds_removes_its_working_copies_and_keeps_status_and_logs(ws: Workspace,
                                                                                   origin: Path) -> None:
    result = ws.run(ws.write(manifest("tidy", origin, [write("a"), write("b")])))
    assert result.code == 0, result.stderr
    assert copies(ws) == []
    assert not list((ws.state / "work").glob(".*.pushed"))
    assert "working copies removed: 2" in result.stderr
    # what `braid status` / `braid logs` would read stays
    assert json.loads((ws.state / "status.json").read_text())["phase"] == "Succeeded"
    assert (ws.state / "tasks" / "a" / "attempt-1.log").stat().st_size > 0
    assert show(origin, "braid/tidy/merged", "a.txt") == "a\n"


def test_keep_workdirs_keeps_them_and_a_failed_run_keeps_them_and_says_where(ws: Workspace, origin: Path) -> None:
    kept = ws.run(ws.write(manifest("keep", origin, [write("a")])), "--keep-workdirs")
    assert kept.code == 0, kept.stderr
    assert copies(ws) == ["a"] and (ws.state / "work" / "a" / "a.txt").read_text() == "a\n"

    failing = [write("a"), script_task("bad", [{"op": "fail", "message": "no"}])]
    failed = ws.run(ws.write(manifest("keep", origin, failing), "failing.yaml"))
    assert failed.code == 1
    assert copies(ws) == ["a", "bad"]
    assert f"working copies (kept for inspection): {ws.state}" in failed.stderr
    assert "`braid clean` removes the working copies once their work is pushed" in failed.stderr


def test_clean_refuses_work_that_is_not_on_the_remote_and_says_which_task_and_why(ws: Workspace, origin: Path,
                                                                                   tmp_path: Path) -> None:
    # the remote refuses the push of one task (a branch below its name is in the way): its
    # commit exists only in its working copy
    git(origin, "branch", "braid/unpushed/tasks/rejected/in-the-way")
    tasks = [write("committed"), write("dirty"), write("clean"), write("rejected")]
    result = ws.run(ws.write(manifest("unpushed", origin, tasks)))
    assert result.code == 1
    assert result.status["tasks"]["rejected"]["reason"] == "PushFailed"
    assert "braid/unpushed/tasks/rejected" not in branches(origin)
    # after the run, by hand: a commit in one working copy, an edit in another
    work = ws.state / "work"
    (work / "committed" / "more.txt").write_text("more\n")
    git(work / "committed", "add", "more.txt")
    git(work / "committed", "commit", "--quiet", "-m", "by hand")
    by_hand = git(work / "committed", "rev-parse", "HEAD")
    (work / "dirty" / "dirty.txt").write_text("changed\n")

    listing = braid_clean(ws)
    assert listing.returncode == 0, listing.stderr
    assert "task clean: work/clean  pushed" in listing.stdout and "would be removed (--yes)" in listing.stdout
    assert "task dirty: work/dirty  NOT pushed" in listing.stdout
    assert copies(ws) == ["clean", "committed", "dirty", "rejected"]  # a listing removes nothing

    done = braid_clean(ws, "--yes")
    assert done.returncode == 1
    refused = [line for line in done.stderr.splitlines() if line.startswith("braid: refused:")]
    assert len(refused) == 3, done.stderr
    assert ("braid: refused: run unpushed, task committed (work/committed): 1 commit on no branch of the remote "
            f"(braid/unpushed/tasks/committed is at {branches(origin)['braid/unpushed/tasks/committed'][:10]})"
            in refused)
    assert ("braid: refused: run unpushed, task dirty (work/dirty): 1 uncommitted change ('dirty.txt')"
            in refused)
    assert ("braid: refused: run unpushed, task rejected (work/rejected): 1 commit on no branch of the remote "
            "(the remote has no branch braid/unpushed/tasks/rejected)" in refused)
    assert copies(ws) == ["committed", "dirty", "rejected"]  # only the pushed one went
    assert git(work / "committed", "rev-parse", "HEAD") == by_hand
    assert (work / "dirty" / "dirty.txt").read_text() == "changed\n"

    # once the hand-made commit is pushed and the edit is undone, those two go too; the remote
    # cannot be reached: nothing is removed on a guess
    git(work / "committed", "push", "--quiet", "origin", "HEAD:refs/heads/by-hand")
    git(work / "dirty", "checkout", "--", "dirty.txt")
    origin.rename(tmp_path / "gone")
    offline = braid_clean(ws, "--yes")
    assert offline.returncode == 1
    assert offline.stderr.count("cannot reach the remote to check what it holds") == 3, offline.stderr
    assert copies(ws) == ["committed", "dirty", "rejected"]
    (tmp_path / "gone").rename(origin)
    again = braid_clean(ws, "--yes")
    assert again.returncode == 1
    assert "removed" in again.stdout and again.stderr.count("braid: refused:") == 1, again.stderr
    assert "task rejected" in again.stderr
    assert copies(ws) == ["rejected"]


def test_clean_refuses_a_run_that_is_live(ws: Workspace, origin: Path) -> None:
    tasks = [script_task("slow", [{"op": "sleep", "seconds": 60}]), write("quick")]
    run = subprocess.Popen([*ws.argv(ws.write(manifest("live", origin, tasks))), "--keep-workdirs"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("the quick task to push", lambda: "braid/live/tasks/quick" in branches(origin))
        wait_for("the slow task's working copy", lambda: (ws.state / "work" / "slow" / ".git").is_dir())
        done = braid_clean(ws, "--yes")
        assert done.returncode == 1
        assert f"braid: refused: run live: live: `braid run` (pid {run.pid}) is using it ({ws.state})" in done.stderr
        assert copies(ws) == ["quick", "slow"]  # not even the pushed one
        assert run.poll() is None, "the run goes on"
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    after = braid_clean(ws, "--yes")
    assert after.returncode == 0, after.stderr
    assert copies(ws) == []


def test_clean_removes_a_finished_run_and_running_the_file_again_still_works(ws: Workspace, origin: Path) -> None:
    # fails the first time only: a resumed attempt finds the first line already pushed
    cmd = ["sh", "-c", 'echo work >> work.txt; if [ "$(wc -l < work.txt)" -eq 1 ]; then exit 3; fi']
    tasks = [write("steady"), {"name": "flaky", "prompt": "p", "agent": {"backend": "command", "command": cmd}}]
    run_file = ws.write(manifest("again", origin, tasks))
    # the default place: <cache dir>/../runs/<run>-<hash>
    argv = [a for a in ws.argv(run_file) if a not in ("--state-dir", str(ws.state))]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 1, first.stderr
    (state,) = (ws.root / "runs").iterdir()
    assert state.name.startswith("again-") and sorted(p.name for p in (state / "work").iterdir()
                                                       if not p.name.startswith(".")) == ["flaky", "steady"]
    steady = branches(origin)["braid/again/tasks/steady"]

    listing = braid_clean(ws, state=False)
    assert listing.returncode == 0, listing.stderr
    assert "run again: ended, phase Failed" in listing.stdout and f"repository {origin}" in listing.stdout
    assert f"state dir {state}" in listing.stdout
    assert listing.stdout.count("pushed") == 2 and "NOT pushed" not in listing.stdout
    assert braid_clean(ws, "nope", state=False).returncode == 2

    done = braid_clean(ws, "again", "--yes", state=False)
    assert done.returncode == 0, done.stderr
    assert "task flaky: work/flaky  pushed" in done.stdout and "removed" in done.stdout
    assert [p.name for p in (state / "work").iterdir()] == []
    assert (state / "status.json").exists() and (state / "tasks" / "flaky" / "attempt-1.log").exists()

    second = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    # the task that failed resumed from its pushed branch, the one that succeeded was kept
    assert show(origin, "braid/again/merged", "work.txt") == "work\nwork\n"
    assert branches(origin)["braid/again/tasks/steady"] == steady
    assert not (state / "work").exists() or [p.name for p in (state / "work").iterdir()] == []

    purged = braid_clean(ws, "again", "--yes", "--purge", state=False)
    assert purged.returncode == 0, purged.stderr
    assert "state dir removed (--purge)" in purged.stdout
    assert list((ws.root / "runs").iterdir()) == []


def test_clean_never_follows_a_symbolic_link_out_of_the_state_dir(ws: Workspace, origin: Path,
                                                                   tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("mine\n")
    # the agent's pushed work holds a link to a directory outside
    cmd = ["ln", "-s", str(outside), "link"]
    tasks = [{"name": "linker", "prompt": "p", "agent": {"backend": "command", "command": cmd}}]
    result = ws.run(ws.write(manifest("links", origin, tasks)), "--keep-workdirs")
    assert result.code == 0, result.stderr
    assert (ws.state / "work" / "linker" / "link").is_symlink()
    # and something put links where braid keeps working copies
    (ws.state / "work" / "planted").symlink_to(outside)
    (ws.state / "work" / ".trash").symlink_to(outside)

    done = braid_clean(ws, "--yes")
    assert done.returncode == 1
    assert ("braid: refused: run links, task planted (work/planted): not a directory braid made "
            "(a symbolic link or a file): left alone") in done.stderr
    assert copies(ws) == ["planted"]
    assert (outside / "precious.txt").read_text() == "mine\n"
    assert sorted(os.listdir(outside)) == ["precious.txt"]


def test_a_clean_killed_while_it_removes_leaves_nothing_a_rerun_trips_over(ws: Workspace, origin: Path) -> None:
    many = ["sh", "-c", "mkdir many && cd many && seq 6000 | xargs touch"]
    flaky = ["sh", "-c", 'echo work >> work.txt; if [ "$(wc -l < work.txt)" -eq 1 ]; then exit 3; fi']
    tasks = [{"name": "big", "prompt": "p", "agent": {"backend": "command", "command": many}},
             {"name": "flaky", "prompt": "p", "agent": {"backend": "command", "command": flaky}}]
    run_file = ws.write(manifest("killed", origin, tasks))
    first = ws.run(run_file)
    assert first.code == 1 and first.status["tasks"]["big"]["phase"] == "Succeeded", first.stderr
    assert copies(ws) == ["big", "flaky"]

    argv = [sys.executable, "-m", "braid", "clean", "--cache-dir", str(ws.cache), "--state-dir", str(ws.state), "-y"]
    cleaning = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trash = ws.state / "work" / ".trash"
    # killed as soon as it has started removing (or whenever it got to by then)
    wait_for("the removal to start", lambda: trash.exists() or cleaning.poll() is not None)
    os.kill(cleaning.pid, signal.SIGKILL)
    cleaning.wait(timeout=10)

    again = ws.run(run_file)
    assert again.code == 0, again.stderr
    # the failed task ran again from its pushed branch, in a working copy made from the remote
    assert show(origin, "braid/killed/merged", "work.txt") == "work\nwork\n"
    assert show(origin, "braid/killed/merged", "many/6000") == ""
    # and the run that succeeded removed every working copy, what the killed clean left included
    assert copies(ws) == [] and not trash.exists()
    listing = braid_clean(ws)
    assert listing.returncode == 0 and "no working copies" in listing.stdout, listing.stdout + listing.stderr
