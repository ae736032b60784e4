"""spec.merge.verify end to end: `braid run --local` verifies the integration, bisects to the culprit,
reports it or leaves it out, on real repositories with real verify processes."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from localrun import Workspace, branches, git, make_origin, manifest, script_task, show, write

CHECK = ("import os, pathlib, sys\n"
         "print('env:', ' '.join(sorted(os.environ)))\n"
         "broken = pathlib.Path('broken').exists()\n"
         "print('broken file found' if broken else 'all good', file=sys.stderr)\n"
         "sys.exit(1 if broken else 0)\n")
VERIFY = ["python3", "-c", CHECK]
NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
API_KEY = "sk-ant-verify-must-never-see-this-0123456789"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin", {"README.md": "# app\n"})


def eight_tasks(culprit: str | None = "echo") -> list[dict]:
    """Eight tasks; `culprit` also writes the file that fails verification; foxtrot builds on echo and golf
    on bravo."""
    deps = {"foxtrot": ["echo"], "golf": ["bravo"]}
    tasks = []
    for name in NAMES:
        steps = [write(f"{name}.txt", f"{name}\n")]
        if name == culprit:
            steps.append(write("broken", "this breaks the build\n"))
        tasks.append(script_task(name, steps, deps.get(name)))
    return tasks


def verify_spec(command: list[str] = VERIFY, **more: object) -> dict:
    return {"verify": {"command": command, **more}}


def test_report_names_the_culprit_with_evidence_in_at_most_log2_plus_one_runs(
        ws: Workspace, origin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    result = ws.run(ws.write(manifest("report", origin, eight_tasks(), merge=verify_spec())))
    assert result.code == 1, result.stderr
    status = result.status
    assert status["phase"] == "Failed"
    assert status["reason"] == "VerificationFailed"
    assert "echo" in status["message"]
    merge = status["merge"]
    # pushed as built: every task merged, the broken file on the integration branch
    assert merge["merged"] == NAMES
    assert branches(origin)["braid/report/merged"] == merge["commit"]
    assert show(origin, "braid/report/merged", "broken") is not None
    verification = merge["verification"]
    assert verification["phase"] == "Failed"
    assert verification["exitCode"] == 1
    assert verification["commit"] == merge["commit"]
    assert "broken file found" in verification["output"]
    assert len(verification["runs"]) <= math.ceil(math.log2(8)) + 1
    assert verification["runs"][0]["tasks"] == NAMES
    [culprit] = verification["culprits"]
    assert culprit["task"] == "echo"
    assert culprit["lastPassed"]["tasks"] == ["alpha", "bravo", "charlie", "delta"]
    assert culprit["firstFailed"]["tasks"] == ["alpha", "bravo", "charlie", "delta", "echo"]
    # the evidence names real commits: the first failing one holds echo's work, the last passing one not
    assert show(origin, culprit["firstFailed"]["commit"], "broken") is not None
    assert show(origin, culprit["lastPassed"]["commit"], "broken") is None
    assert show(origin, culprit["lastPassed"]["commit"], "delta.txt") == "delta\n"
    assert verification["excluded"] == []
    assert "culprit: task echo: passes up to delta" in result.stdout + result.stderr
    # no key and no git or braid credential reaches the verify command
    assert API_KEY not in result.stdout + result.stderr + str(status)
    env_line = next(line for line in verification["output"].splitlines() if line.startswith("env:"))
    assert "ANTHROPIC_API_KEY" not in env_line
    assert "GIT_ASKPASS" not in env_line


def test_exclude_pushes_only_a_verified_result_without_the_culprit_and_its_dependents(
        ws: Workspace, origin: Path) -> None:
    spec = verify_spec()
    spec["onVerifyFailure"] = "exclude"
    result = ws.run(ws.write(manifest("exclude", origin, eight_tasks(), merge=spec)))
    assert result.code == 1, result.stderr
    status = result.status
    assert status["reason"] == "VerificationFailed"
    merge = status["merge"]
    assert merge["merged"] == ["alpha", "bravo", "charlie", "delta", "golf", "hotel"]
    assert set(merge["notMerged"]) == {"echo", "foxtrot"}
    verification = merge["verification"]
    assert verification["phase"] == "Passed"
    assert verification["excluded"] == ["echo", "foxtrot"]
    assert [c["task"] for c in verification["culprits"]] == ["echo"]
    assert verification["culprits"][0]["excluded"] == ["echo", "foxtrot"]
    # the bisection, then one run of the rebuilt result
    assert len(verification["runs"]) <= math.ceil(math.log2(8)) + 2
    assert verification["runs"][-1]["phase"] == "Passed"
    for name in ("echo", "foxtrot"):
        assert status["tasks"][name]["phase"] == "Succeeded"
        assert status["tasks"][name]["reason"] == "VerificationFailed"
        assert status["tasks"][name]["message"].startswith("not merged")
    tip = branches(origin)["braid/exclude/merged"]
    assert tip == merge["commit"] == verification["commit"]
    assert show(origin, tip, "broken") is None
    assert show(origin, tip, "foxtrot.txt") is None
    assert show(origin, tip, "golf.txt") == "golf\n"
    # what was pushed passes the verify command when run by hand
    checkout = ws.root / "checkout"
    git(origin, "worktree", "add", "--quiet", "--detach", str(checkout), tip)
    assert subprocess.run(VERIFY, cwd=checkout, capture_output=True, check=False).returncode == 0


def test_a_passing_verify_shows_passed_and_the_run_succeeds(ws: Workspace, origin: Path) -> None:
    result = ws.run(ws.write(manifest("passing", origin, eight_tasks(culprit=None), merge=verify_spec())))
    assert result.code == 0, result.stderr
    verification = result.status["merge"]["verification"]
    assert result.status["phase"] == "Succeeded"
    assert verification["phase"] == "Passed"
    assert verification["exitCode"] == 0
    assert len(verification["runs"]) == 1
    assert verification["culprits"] == []
    assert "all good" in verification["output"]


def test_a_verify_that_times_out_is_stopped_and_reported(ws: Workspace, origin: Path) -> None:
    marker = f"verify-leftover-{ws.root.name}"
    # it also leaves a process of its own session behind: that one ends too
    sleeper = ["python3", "-c", "import subprocess, time\n"
               f"subprocess.Popen(['python3', '-c', 'import time; time.sleep(300)', '{marker}'], start_new_session=True)\n"
               "print('started', flush=True)\ntime.sleep(120)\n"]
    tasks = [script_task("only", [write("only.txt", "1\n")])]
    result = ws.run(ws.write(manifest("slow", origin, tasks, merge=verify_spec(sleeper, timeoutSeconds=2))),
                    timeout=100)
    assert result.code == 1, result.stderr
    verification = result.status["merge"]["verification"]
    assert verification["phase"] == "TimedOut"
    assert verification.get("exitCode") is None
    assert 2 <= verification["durationSeconds"] < 30
    assert "started" in verification["output"]
    assert result.status["reason"] == "VerificationFailed"
    assert [c["task"] for c in verification["culprits"]] == ["only"]
    assert len(verification["runs"]) == 1
    time.sleep(1)
    left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert marker not in left
    time.sleep(1)
    left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert marker not in left


def test_the_verify_command_sees_neither_braids_state_nor_its_cache_nor_the_remote(
        ws: Workspace, origin: Path) -> None:
    # every file under them but the checkout it runs in (bubblewrap makes the directories leading to it)
    look = ("import os, sys\n"
            "here = os.getcwd()\n"
            "seen = [os.path.join(d, f) for p in sys.argv[1:] for d, _, fs in os.walk(p) for f in fs\n"
            "        if not (d + '/').startswith(here + '/')]\n"
            "print(here, seen)\n"
            "sys.exit(1 if seen else 0)\n")
    command = ["python3", "-c", look, str(ws.state), str(ws.cache), str(origin)]
    tasks = [script_task("only", [write("only.txt", "1\n")])]
    result = ws.run(ws.write(manifest("hidden", origin, tasks, merge=verify_spec(command))))
    verification = result.status["merge"]["verification"]
    assert verification["phase"] == "Passed", verification["output"]
    assert result.code == 0


def test_ctrl_c_during_verification_stops_it_and_pushes_nothing(ws: Workspace, origin: Path) -> None:
    shared = ws.root / "shared"
    shared.mkdir()
    marker = shared / "verify-started"
    command = ["python3", "-c", "import pathlib, sys, time\n"
               "pathlib.Path(sys.argv[1]).write_text('x')\ntime.sleep(120)\n", str(marker)]
    tasks = [script_task("only", [write("only.txt", "1\n")])]
    # the sandbox lets the command write the marker: --share, as for agents
    run_file = ws.write(manifest("stopped", origin, tasks, merge=verify_spec(command, timeoutSeconds=300)))
    proc = subprocess.Popen([*ws.argv(run_file), "--share", str(shared)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert time.monotonic() < deadline, "the verify command never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - started < 20, "stopping the verification took too long"
    assert proc.returncode == 1, err
    status = json.loads((ws.root / "status.json").read_text())
    assert status["phase"] == "Cancelled"
    assert status["merge"]["phase"] == "Failed"
    assert "interrupted during verification" in status["merge"]["message"]
    assert "braid/stopped/merged" not in branches(origin)
