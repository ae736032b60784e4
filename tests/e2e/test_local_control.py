"""`braid status`, `braid logs` and `braid cancel` on a local run in progress, from a second process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localrun import Workspace, branches, git, make_origin, manifest, script_task, show


def braid(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "braid", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def wait_until(check, timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin", {"README.md": "hello\n"})


def status_json(name: str, *where: str) -> dict | None:
    proc = braid("status", name, "-o", "json", *where)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def test_status_logs_and_cancel_work_from_another_process(ws: Workspace, origin: Path) -> None:
    tasks = [script_task("slow", [{"op": "write", "path": "slow.txt", "content": "started\n"},
                                  {"op": "sleep", "seconds": 120}]),
             script_task("quick", [{"op": "write", "path": "quick.txt", "content": "done\n"}]),
             script_task("after", [{"op": "write", "path": "after.txt", "content": "x\n"}], ["slow"])]
    run_file = ws.write(manifest("ctl", origin, tasks))
    # no --state-dir: the commands find the run by its name under the cache dir's runs directory
    argv = [sys.executable, "-m", "braid", "run", str(run_file), "--no-progress", "--cache-dir", str(ws.cache)]
    where = ("--cache-dir", str(ws.cache))
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            running = wait_until(
                lambda: (s := status_json("ctl", *where)) and s["tasks"].get("quick", {}).get("phase") == "Succeeded"
                and s["tasks"].get("slow", {}).get("phase") == "Running" and s,
                what="slow running and quick succeeded")
            assert running["phase"] == "Running"
            table = braid("status", "ctl", *where)
            assert table.returncode == 0, table.stderr
            assert "run ctl: Running, running (braid run pid" in table.stdout
            assert any(line.split()[:2] == ["slow", "Running"] for line in table.stdout.splitlines())

            with subprocess.Popen([sys.executable, "-m", "braid", "logs", "ctl", "slow", "-f", *where],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as logs:
                time.sleep(1.0)
                assert logs.poll() is None, "logs -f ended while the task still runs"
                cancel = braid("cancel", "ctl", *where)
                assert cancel.returncode == 0, cancel.stderr
                assert cancel.stdout.strip() == "run ctl: Cancelled"
                # the run has ended: -f ends by itself
                out, _ = logs.communicate(timeout=30)
            assert logs.returncode == 0
            assert out.startswith("==> slow, attempt 1 <==\n")
            assert "workspace ready on braid/ctl/tasks/slow" in out
            run.wait(timeout=30)
        finally:
            run.kill()
    assert run.returncode == 1

    final = status_json("ctl", *where)
    assert final is not None and final["phase"] == "Cancelled"
    assert final["tasks"]["slow"]["phase"] == "Cancelled"
    assert final["tasks"]["after"]["phase"] == "Cancelled"
    # what the stopped agent had written is pushed
    assert show(origin, "braid/ctl/tasks/slow", "slow.txt") == "started\n"
    assert "braid/ctl/tasks/after" not in branches(origin)

    again = braid("cancel", "ctl", *where)
    assert again.returncode == 1 and "is not running" in again.stderr


def test_logs_show_an_agents_escape_sequences_instead_of_obeying_them(ws: Workspace, origin: Path) -> None:
    task = {"name": "noisy", "prompt": "p", "agent": {
        "backend": "command",
        "command": [sys.executable, "-c", "import sys; sys.stderr.write('\\x1b]0;owned\\x07\\x1b[2J loud\\n')"]}}
    result = ws.run(ws.write(manifest("noisy", origin, [task])))
    assert result.code == 0, result.stderr
    proc = braid("logs", "noisy", "noisy", "--state-dir", str(ws.state))
    assert proc.returncode == 0, proc.stderr
    assert "\\x1b]0;owned\\x07\\x1b[2J loud" in proc.stdout
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout


def test_a_name_several_repositories_use_must_be_told_apart(ws: Workspace, tmp_path: Path) -> None:
    for n in (1, 2):
        repo = make_origin(tmp_path / f"origin{n}", {"README.md": f"repo {n}\n"})
        data = manifest("same", repo, [script_task("t", [{"op": "write", "path": "t.txt", "content": "t\n"}])])
        argv = ["run", str(ws.write(data, f"run{n}.yaml")), "--no-progress", "--cache-dir", str(ws.cache)]
        assert braid(*argv).returncode == 0
    proc = braid("status", "same", "--cache-dir", str(ws.cache))
    assert proc.returncode == 1
    assert "2 local runs are named 'same'" in proc.stderr and "give --state-dir" in proc.stderr
    state = next(p for p in (ws.cache.parent / "runs").iterdir() if p.name.startswith("same-"))
    chosen = braid("status", "same", "--state-dir", str(state), "-o", "json")
    assert chosen.returncode == 0 and json.loads(chosen.stdout)["phase"] == "Succeeded"
    missing = braid("logs", "same", "nope", "--state-dir", str(state))
    assert missing.returncode == 1 and "has no task 'nope'" in missing.stderr
    unknown = braid("status", "other", "--cache-dir", str(ws.cache))
    assert unknown.returncode == 1 and "no local run named 'other'" in unknown.stderr
    assert git(tmp_path / "origin1", "rev-parse", "--verify", "braid/same/merged")
