"""Resource limits of `braid run --local`, held by real cgroups on this machine.

The agents are real processes in the bubblewrap sandbox; `--limits cgroup` makes braid exit 2
when the machine's cgroups cannot hold them, so these tests fail loudly rather than pass
on rlimits.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from braid.confine.limits import detect
from localrun import Workspace, make_origin, manifest, show

HOG = "open('hog.txt', 'w').write('started\\n'); b = bytearray(200 * 2**20); open('hog.txt', 'a').write('done\\n')"
SPIN = ("import os, time\n"
        "wall, cpu = time.monotonic(), time.process_time()\n"
        "while time.monotonic() - wall < 4: pass\n"
        "open(os.environ['BRAID_TASK'] + '-cpu.txt', 'w').write(str((time.process_time() - cpu) / (time.monotonic() - wall)))\n")


def command_task(name: str, code: str, resources: dict | None = None) -> dict:
    task = {"name": name, "prompt": f"do {name}", "agent": {"backend": "command", "command": ["python3", "-c", code]}}
    if resources:
        task["resources"] = resources
    return task


def leftover_cgroups() -> list[Path]:
    """Cgroups braid made for attempts (braid-<pid>-<task>-<attempt>) or probes; not other programs' (the test
    node's kubelet has its own braid-node-* ones)."""
    named = re.compile(r"braid-(probe-)?[0-9]+(-.+)?")
    return [p for base in set(detect().bases.values()) for p in base.glob("braid-*") if named.fullmatch(p.name)]


def test_an_agent_past_its_memory_limit_ends_oomkilled_and_its_work_is_pushed(ws: Workspace) -> None:
    origin = make_origin(ws.root / "origin", {"README.md": "hi\n"})
    data = manifest("limits", origin, [
        command_task("hog", HOG, {"limits": {"memory": "20Mi"}}),
        command_task("calm", "open('calm.txt', 'w').write('ok\\n'); b = bytearray(100 * 2**20)"),
    ], retry={"limit": 2, "backoffSeconds": 0})
    out = ws.run(ws.write(data), "--sandbox", "bwrap", "--limits", "cgroup", timeout=240)

    assert out.code == 1, out.stderr
    hog, calm = out.status["tasks"]["hog"], out.status["tasks"]["calm"]
    assert (hog["phase"], hog["reason"]) == ("Failed", "OOMKilled"), hog
    assert "ran out of memory" in hog["message"] and "20Mi" in hog["message"]
    # as on the cluster, running out of memory is not worth another attempt
    assert hog["attempts"] == 1
    # what the agent wrote before the kernel killed it is committed and pushed
    assert show(origin, "braid/limits/tasks/hog", "hog.txt") == "started\n"
    assert hog["resourceUsage"]["enforcedBy"].startswith("cgroup v")
    assert 19 * 2**20 <= hog["resourceUsage"]["memoryPeakBytes"] <= 21 * 2**20
    # the task without a limit allocated its 100 MiB and succeeded next to it
    assert calm["phase"] == "Succeeded", calm
    assert calm["resourceUsage"]["memoryPeakBytes"] > 100 * 2**20
    assert show(origin, "braid/limits/tasks/calm", "calm.txt") == "ok\n"
    line = next(x for x in out.stderr.splitlines() if " hog " in x and "Failed" in x)
    assert "OOMKilled" in line and "ran out of memory" in line
    assert "WARNING: resource limits" not in out.stderr
    assert leftover_cgroups() == []


def test_a_cpu_limit_holds_the_agent_to_its_quota_and_shows_while_it_runs(ws: Workspace) -> None:
    origin = make_origin(ws.root / "origin", {"README.md": "hi\n"})
    data = manifest("cpu", origin, [
        command_task("slow", SPIN, {"limits": {"cpu": "100m"}}),
        command_task("free", SPIN),
    ])
    run_file = ws.write(data)
    status_file = ws.state / "status.json"
    proc = subprocess.Popen([*ws.argv(run_file), "--sandbox", "bwrap", "--limits", "cgroup"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, list[dict]] = {"slow": [], "free": []}
    try:
        while proc.poll() is None:
            time.sleep(0.3)
            try:
                live = json.loads(status_file.read_text())
            except (OSError, ValueError):
                continue
            for name, state in live.get("tasks", {}).items():
                if state.get("phase") == "Running" and state.get("resourceUsage", {}).get("sampledAt"):
                    seen[name].append(state["resourceUsage"])
        stdout, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr

    # what the agent itself measured: about a tenth of a CPU, never more than twice that
    ratio = float(show(origin, "braid/cpu/tasks/slow", "slow-cpu.txt"))
    assert ratio < 0.2, ratio
    status = json.loads((ws.root / "status.json").read_text())
    slow, free = status["tasks"]["slow"]["resourceUsage"], status["tasks"]["free"]["resourceUsage"]
    # the kernel throttled the limited agent for most of its 4 seconds, and never the other
    assert slow["cpuThrottledSeconds"] > 2, slow
    assert not free["cpuThrottledSeconds"], free
    assert slow["cpuSeconds"] < 0.2 * 4 + 0.5, slow
    # while they ran, the status said how much CPU each used and how much memory
    assert seen["slow"] and seen["free"], seen
    assert all(s["cpuCores"] <= 0.25 for s in seen["slow"]), seen["slow"]
    assert any(s["cpuCores"] > 0.05 for s in seen["slow"]) and any(s["memoryBytes"] > 0 for s in seen["slow"])
    assert leftover_cgroups() == []


def test_without_cgroups_memory_is_held_by_rlimit_and_the_run_says_what_is_not_enforced(ws: Workspace) -> None:
    origin = make_origin(ws.root / "origin", {"README.md": "hi\n"})
    data = manifest("rlimit", origin, [
        command_task("hog", "b = bytearray(1024 * 2**20)", {"limits": {"memory": "256Mi", "cpu": "500m"}}),
    ])
    out = ws.run(ws.write(data), "--sandbox", "bwrap", "--limits", "rlimit", timeout=120)

    assert out.code == 1
    warnings = [x for x in out.stderr.splitlines() if "WARNING: resource limits" in x]
    assert len(warnings) == 1, out.stderr
    assert "limits.memory as RLIMIT_AS only" in warnings[0]
    assert "limits.cpu and requests.cpu NOT enforced" in warnings[0] and "RLIMIT_CPU" in warnings[0]
    hog = out.status["tasks"]["hog"]
    assert hog["phase"] == "Failed" and "MemoryError" in hog["message"], hog
    assert hog["resourceUsage"]["enforcedBy"] == "rlimit"


def test_a_bad_quantity_is_refused_before_anything_is_created(ws: Workspace) -> None:
    origin = make_origin(ws.root / "origin", {"README.md": "hi\n"})
    data = manifest("bad", origin, [command_task("a", "pass", {"limits": {"memory": "20MB"}})])
    out = ws.run(ws.write(data))
    assert out.code == 2
    assert "spec.tasks[0].resources.limits.memory: '20MB' is not a quantity" in out.stderr
    assert not ws.state.exists()
