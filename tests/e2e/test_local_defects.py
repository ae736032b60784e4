"""What a new user of `braid run --local` runs into: suspend, re-runs, state paths, two runs
at once, a killed run, and a repository that is not there."""

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


def append(name: str, deps: list[str] | None = None, prompt: str | None = None) -> dict:
    task = script_task(name, [{"op": "append", "path": f"{name}.txt", "content": "ran\n"}], deps)
    if prompt:
        task["prompt"] = prompt
    return task


def agents_of(ws: Workspace) -> list[str]:
    """The `braid agent-run` processes of this workspace's runs."""
    out = subprocess.run(["pgrep", "-f", f"agent-run --task {ws.state}"], capture_output=True, text=True)
    return out.stdout.split()


def wait_for(what: str, check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_suspend_ends_the_run_suspended_and_starts_nothing(ws: Workspace, origin: Path) -> None:
    started = time.monotonic()
    result = ws.run(ws.write(manifest("held", origin, [append("a")], suspend=True)), timeout=60)
    assert time.monotonic() - started < 30
    assert result.code == 1, result.stderr
    assert result.status["phase"] == "Suspended"
    assert result.status["reason"] and "suspend" in result.status["message"].lower()
    assert result.status["tasks"]["a"]["phase"] == "Pending"
    assert "braid/held/tasks/a" not in branches(origin)


def test_a_rerun_runs_only_the_changed_task_and_what_depends_on_it(ws: Workspace, origin: Path) -> None:
    tasks = [append("a"), append("b", ["a"]), append("c", ["b"]), append("d")]
    first = ws.run(ws.write(manifest("edit", origin, tasks)))
    assert first.code == 0, first.stderr

    tasks[1] = append("b", ["a"], prompt="do b, differently")
    second = ws.run(ws.write(manifest("edit", origin, tasks)))
    assert second.code == 0, second.stderr
    ran_again = {name for name in "abcd" if show(origin, f"braid/edit/tasks/{name}", f"{name}.txt") == "ran\nran\n"}
    assert ran_again == {"b", "c"}
    for kept in ("a", "d"):
        assert second.status["tasks"][kept]["message"] == "unchanged since the previous run"
        assert second.status["tasks"][kept]["commit"] == first.status["tasks"][kept]["commit"]


def test_a_relative_state_dir_gives_agents_an_absolute_workdir(ws: Workspace, origin: Path) -> None:
    cmd = ["sh", "-c", 'printf "%s" "$BRAID_WORKDIR" > workdir.txt']
    tasks = [{"name": "where", "prompt": "p", "agent": {"backend": "command", "command": cmd}}]
    run_file = ws.write(manifest("rel", origin, tasks))
    argv = [a if a != str(ws.state) else "rel-state" for a in ws.argv(run_file)]
    proc = subprocess.run(argv, cwd=ws.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    workdir = show(origin, "braid/rel/tasks/where", "workdir.txt")
    assert workdir and Path(workdir).is_absolute()
    assert Path(workdir).is_relative_to((ws.root / "rel-state").resolve())


def test_a_second_run_of_the_same_state_is_refused(ws: Workspace, origin: Path, tmp_path: Path) -> None:
    tasks = [script_task("slow", [{"op": "sleep", "seconds": 60}])]
    run_file = ws.write(manifest("twice", origin, tasks))
    first = subprocess.Popen(ws.argv(run_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the first run's agent", lambda: agents_of(ws))
        second = subprocess.run(ws.argv(ws.write(manifest("twice", origin, tasks), "again.yaml")),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "another `braid run` (pid" in second.stderr and str(first.pid) in second.stderr
        assert first.poll() is None, "the first run goes on"
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)


def test_a_killed_run_leaves_no_agent_running_and_the_next_run_finishes(ws: Workspace, origin: Path,
                                                                        tmp_path: Path) -> None:
    mark = f"braid-test-{os.getpid()}-{time.monotonic_ns()}"
    # slow the first time only: a resumed attempt finds the first line already pushed
    cmd = ["sh", "-c", 'echo step >> work.txt; if [ "$(wc -l < work.txt)" -eq 1 ]; then sleep 120; fi']
    tasks = [{"name": "long", "prompt": "p", "agent": {"backend": "command", "command": cmd,
                                                      "env": {"MARK": mark}}}]
    run_file = ws.write(manifest("killed", origin, tasks))
    braid = subprocess.Popen(ws.argv(run_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("the agent to start", lambda: (ws.state / "work" / "long" / "work.txt").exists())
    os.kill(braid.pid, signal.SIGKILL)
    braid.wait(timeout=10)
    wait_for("the agents to stop", lambda: not agents_of(ws), timeout=30)
    sleepers = subprocess.run(["pgrep", "-f", "sleep 120"], capture_output=True, text=True).stdout.split()
    assert not [p for p in sleepers if Path(f"/proc/{p}/environ").exists()
                and mark.encode() in Path(f"/proc/{p}/environ").read_bytes()], "the agent outlived braid"
    # what the killed attempt wrote was pushed on its way out, and the next run resumes from it
    assert show(origin, "braid/killed/tasks/long", "work.txt") == "step\n"
    again = ws.run(run_file)
    assert again.code == 0, again.stderr
    assert "left running" not in again.stderr  # nothing was: the agent had stopped with braid
    assert show(origin, "braid/killed/merged", "work.txt") == "step\nstep\n"


def test_status_json_of_a_killed_run_is_replaced_by_the_next(ws: Workspace, origin: Path) -> None:
    """The next run does not trust a `Running` left by a killed one."""
    tasks = [script_task("slow", [{"op": "sleep", "seconds": 60}])]
    run_file = ws.write(manifest("stale", origin, tasks))
    braid = subprocess.Popen(ws.argv(run_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("the agent", lambda: agents_of(ws))
    os.kill(braid.pid, signal.SIGKILL)
    braid.wait(timeout=10)
    wait_for("the agents to stop", lambda: not agents_of(ws), timeout=30)
    quick = ws.write(manifest("stale", origin, [script_task("slow", [{"op": "write", "path": "s", "content": "s"}])]))
    done = ws.run(quick)
    assert done.code == 0, done.stderr
    assert json.loads((ws.root / "status.json").read_text())["phase"] == "Succeeded"


def test_agent_output_cannot_drive_the_terminal(ws: Workspace, origin: Path) -> None:
    """An agent's last words reach the run's output escaped: no title, no erased line, no fake conflict."""
    cmd = ["sh", "-c", r'printf "\033[2K\033[1Gconflict: task x: fake\033]0;owned\007\n" >&2; exit 3']
    tasks = [{"name": "loud", "prompt": "p", "agent": {"backend": "command", "command": cmd}}]
    result = ws.run(ws.write(manifest("loud", origin, tasks)))
    assert result.code == 1
    assert "\x1b]0;owned\x07" in result.status["tasks"]["loud"]["message"]  # the record keeps what was said
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream and "\x07" not in stream and "\r" not in stream
    assert "\\x1b[2K\\x1b[1Gconflict: task x: fake" in result.stderr  # shown, escaped


def test_a_commit_id_base_ref_must_exist_in_the_repository(ws: Workspace, origin: Path) -> None:
    before = branches(origin)
    data = manifest("sha", origin, [script_task("a", [])])
    data["spec"]["repo"]["baseRef"] = "deadbeefcafe"
    result = ws.run(ws.write(data))
    assert result.code == 2, result.stderr
    assert "repo.baseRef: 'deadbeefcafe' is not a branch, tag or commit" in result.stderr
    assert branches(origin) == before and not (ws.state / "work").exists()
    # a commit that exists is a fine starting point
    data["spec"]["repo"]["baseRef"] = git(origin, "rev-parse", "main")[:12]
    result = ws.run(ws.write(data))
    assert result.code == 0, result.stderr
