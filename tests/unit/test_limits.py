"""Resource limits: quantities, a task's effective resources, how a machine's cgroups are chosen, and
what each mechanism really does to a process on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from braid.api import AgentTaskSpec, ParallelRun, ParallelRunStatus, TaskStatus, format_validation_error
from braid.api.quantity import cpu_cores, format_bytes, memory_bytes, parse_quantity
from braid.api.status import ResourceUsage
from braid.confine.limits import (
    Cgroup,
    CgroupSetup,
    Hierarchy,
    Limits,
    Placement,
    detect,
    hierarchies,
    plan_cgroups,
)
from braid.kube import agent_pod, agent_task
from braid.local.progress import Progress
from braid.plan import task_spec
from braid.settings import Settings


def run_with(tasks: list[dict], **spec: object) -> dict:
    return {"apiVersion": "braid.dev/v1alpha1", "kind": "ParallelRun", "metadata": {"name": "r"},
            "spec": {"repo": {"url": "/tmp/x"}, "tasks": tasks, **spec}}


def problem(data: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        ParallelRun.model_validate(data)
    return format_validation_error(caught.value)


# -- quantities ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("100m", Decimal("0.1")), ("0.5", Decimal("0.5")), (".5", Decimal("0.5")), (2, 2), ("2", 2),
    ("20Mi", 20 * 2**20), ("1Gi", 2**30), ("1.5Ki", 1536), ("1k", 1000), ("512M", 512 * 10**6), ("1G", 10**9),
    ("1e3", 1000), ("+1Ki", 1024),
    ("20MB", None), ("1.5 Gi", None), ("lots", None), ("", None), ("-1", None), ("Mi", None), ("1..5", None),
])
def test_parse_quantity(text: str | int, value: Decimal | int | None) -> None:
    assert parse_quantity(text) == value


def test_memory_in_whole_bytes_and_cpu_in_cores() -> None:
    assert memory_bytes("20Mi") == 20 * 2**20
    assert memory_bytes("1.5") == 2  # the kernel takes whole bytes: rounded up
    assert cpu_cores("100m") == Decimal("0.1")
    assert cpu_cores(2) == 2
    assert [format_bytes(b) for b in (512, 1536, 20 * 2**20, 3 * 2**30)] == ["512", "1.5Ki", "20.0Mi", "3.0Gi"]


@pytest.mark.parametrize(("resources", "message"), [
    ({"limits": {"memory": "20Mx"}}, "spec.tasks[0].resources.limits.memory: '20Mx' is not a quantity"),
    ({"limits": {"cpu": "-1"}}, "spec.tasks[0].resources.limits.cpu: '-1' is not a quantity"),
    ({"limits": {"cpu": 0}}, "spec.tasks[0].resources.limits.cpu: 0 must be more than zero"),
    ({"requests": {"memory": True}}, "spec.tasks[0].resources.requests.memory: True is not a quantity"),
    ({"limits": {"memory": [20]}}, "spec.tasks[0].resources.limits.memory: [20] is not a quantity"),
    ({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
     "spec.tasks[0].resources: requests.cpu (2) is more than limits.cpu (1)"),
])
def test_a_bad_quantity_fails_validation_naming_the_field(resources: dict, message: str) -> None:
    assert problem(run_with([{"name": "a", "prompt": "p", "resources": resources}])).startswith(message)


def test_run_level_resources_are_checked_too_and_decimals_read_as_quantities() -> None:
    assert problem(run_with([{"name": "a", "prompt": "p"}], resources={"limits": {"memory": "lots"}})).startswith(
        "spec.resources.limits.memory: 'lots' is not a quantity")
    run = ParallelRun.model_validate(run_with([{"name": "a", "prompt": "p", "resources": {"limits": {"cpu": 0.5}}}]))
    assert run.spec.tasks[0].resources.limits == {"cpu": "0.5"}


def test_a_task_request_above_its_limit_once_the_run_defaults_apply_is_refused() -> None:
    data = run_with([{"name": "a", "prompt": "p", "resources": {"limits": {"memory": "20Mi"}}}],
                    resources={"requests": {"memory": "1Gi"}})
    assert problem(data) == ("spec.tasks[0].resources: requests.memory (1Gi) is more than limits.memory (20Mi) "
                             "once spec.resources is applied")


def test_the_agent_task_spec_checks_quantities_as_well() -> None:
    with pytest.raises(ValidationError) as caught:
        AgentTaskSpec.model_validate({"run": "r", "task": "a", "prompt": "p", "repo": {"url": "/tmp/x"},
                                      "branch": "braid/r/tasks/a", "resources": {"limits": {"memory": "big"}}})
    assert format_validation_error(caught.value, "task").startswith("task.resources.limits.memory: 'big'")


# -- a task's effective resources, on both launchers -------------------------------------------------


def test_task_resources_replace_the_runs_one_by_one_on_both_launchers() -> None:
    run = ParallelRun.model_validate(run_with(
        [{"name": "hog", "prompt": "p", "resources": {"limits": {"memory": "20Mi"}}}, {"name": "calm", "prompt": "p"}],
        resources={"requests": {"cpu": "500m"}, "limits": {"cpu": "2", "memory": "4Gi"}}))
    hog, calm = run.spec.tasks
    assert run.spec.resources_for(hog).wire() == {"requests": {"cpu": "500m"},
                                                  "limits": {"cpu": "2", "memory": "20Mi"}}
    assert run.spec.resources_for(calm) == run.spec.resources
    # locally: the attempt's spec, which agent-run and the cgroup get
    assert task_spec(run, hog).resources == run.spec.resources_for(hog)
    assert Limits.of(task_spec(run, hog).resources) == Limits(memory=20 * 2**20, cpu=Decimal(2),
                                                               cpu_weight=Decimal("0.5"))
    # on the cluster: the agent container of the task's pod
    run.metadata.namespace, run.metadata.uid = "ns", "uid"
    from braid.api import AgentTask

    task = AgentTask.model_validate(agent_task(run, hog))
    pod = agent_pod(task, 1, Settings(runner_image="braid-agent:test"))
    agent = next(c for c in pod["spec"]["containers"] if c["name"] == "agent")
    assert agent["resources"]["limits"] == {"cpu": "2", "memory": "20Mi"}
    assert ParallelRun.model_validate(run_with([{"name": "a", "prompt": "p"}])).spec.resources_for(
        ParallelRun.model_validate(run_with([{"name": "a", "prompt": "p"}])).spec.tasks[0]) is None


# -- choosing the mechanism ------------------------------------------------------------------------

HYBRID_CGROUP = "4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n"
HYBRID_MOUNTS = """\
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpuacct
33 25 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
38 25 0:34 / /sys/fs/cgroup/unified rw,relatime shared:17 - cgroup2 cgroup2 rw
"""
UNIFIED_CGROUP = "0::/user.slice/braid\\040run.scope\n"
UNIFIED_MOUNTS = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def works(_: Path, __: str) -> None:
    return None


def test_hierarchies_are_found_where_they_are_mounted() -> None:
    found = hierarchies(HYBRID_CGROUP, HYBRID_MOUNTS)
    assert Hierarchy(1, frozenset({"memory"}), Path("/sys/fs/cgroup/memory/process_api/abc")) in found
    assert Hierarchy(2, frozenset(), Path("/sys/fs/cgroup/unified")) in found
    # a mount of a cgroup below the process's own (a container's view) does not hold it
    assert hierarchies("4:memory:/a\n", "33 25 0:29 /b /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n") == []
    (unified,) = hierarchies("0::/user.slice/run.scope\n", UNIFIED_MOUNTS)
    assert unified.base == Path("/sys/fs/cgroup/user.slice/run.scope")


def test_cgroup_v2_is_chosen_when_braid_has_its_memory_and_cpu_controllers() -> None:
    setup = plan_cgroups(hierarchies("0::/u/run.scope\n", UNIFIED_MOUNTS), works, lambda _: {"cpu", "memory", "io"})
    assert setup == CgroupSetup(2, {"memory": Path("/sys/fs/cgroup/u/run.scope"),
                                    "cpu": Path("/sys/fs/cgroup/u/run.scope")})
    assert setup.warning({"memory", "cpu"}) is None


def test_cgroup_v1_is_chosen_when_v2_has_no_controllers_as_on_a_hybrid_machine() -> None:
    setup = plan_cgroups(hierarchies(HYBRID_CGROUP, HYBRID_MOUNTS), works, lambda _: set())
    assert setup.version == 1
    assert setup.bases == {"memory": Path("/sys/fs/cgroup/memory/process_api/abc"),
                           "cpu": Path("/sys/fs/cgroup/cpu"), "cpuacct": Path("/sys/fs/cgroup/cpuacct")}
    assert setup.warning({"memory", "cpu"}) is None


def test_without_a_usable_cgroup_memory_falls_back_to_rlimit_as_and_cpu_is_said_to_be_unenforced() -> None:
    setup = plan_cgroups(hierarchies(UNIFIED_CGROUP, UNIFIED_MOUNTS), works, lambda _: set())
    assert setup.version is None
    warning = setup.warning({"memory", "cpu"})
    assert warning is not None and warning.startswith("WARNING: resource limits: ")
    assert "limits.memory as RLIMIT_AS only" in warning
    assert "limits.cpu and requests.cpu NOT enforced" in warning and "RLIMIT_CPU" in warning
    assert "has no memory and cpu controller for braid" in warning
    # nothing asked for, nothing to say
    assert setup.warning(set()) is None


def test_a_v1_hierarchy_that_cannot_be_used_leaves_only_that_limit_unenforced() -> None:
    def cpu_denied(base: Path, controller: str) -> str | None:
        return "cannot create a cgroup: Permission denied" if controller == "cpu" else None

    setup = plan_cgroups(hierarchies(HYBRID_CGROUP, HYBRID_MOUNTS), cpu_denied, lambda _: set())
    assert setup.version == 1 and setup.has("memory") and not setup.has("cpu")
    warning = setup.warning({"memory", "cpu"})
    assert "limits.memory by cgroup v1" in warning and "limits.cpu and requests.cpu NOT enforced" in warning
    assert "cgroup v1 cpu at /sys/fs/cgroup/cpu: cannot create a cgroup: Permission denied" in warning
    assert "RLIMIT_AS" not in warning
    assert plan_cgroups([], works, lambda _: set()).problems == ("no cgroup file system is mounted",)


def test_resources_a_local_run_does_not_enforce_are_named() -> None:
    limits = Limits.of(ParallelRun.model_validate(run_with([{"name": "a", "prompt": "p", "resources": {
        "limits": {"memory": "1Gi", "ephemeral-storage": "1Gi"}}}])).spec.tasks[0].resources)
    assert limits.unenforced == ("ephemeral-storage",)
    warning = CgroupSetup(1, {"memory": Path("/m")}).warning(limits.wanted, limits.unenforced)
    assert "limits.ephemeral-storage NOT enforced locally" in warning


# -- the real thing, on this machine --------------------------------------------------------------

HOG = "b = bytearray(200 * 2**20)"


def test_this_machine_gives_braid_memory_and_cpu_cgroups() -> None:
    setup = detect()
    assert setup.has("memory") and setup.has("cpu"), f"cgroups unusable here: {setup.problems}"


def test_an_attempt_cgroup_holds_memory_and_cpu_and_is_removed() -> None:
    setup = detect()
    cgroup = Cgroup.create(setup, f"braid-test-{os.getpid()}", Limits(memory=20 * 2**20, cpu=Decimal("0.1")))
    try:
        enter = Placement(tuple(cgroup.paths)).preexec()
        hog = subprocess.run([sys.executable, "-c", HOG], preexec_fn=enter, capture_output=True, check=False)
        assert hog.returncode == -9
        assert cgroup.out_of_memory(killed=True)
        spin = ("import time\nw, c = time.monotonic(), time.process_time()\nwhile time.monotonic() - w < 1.5: pass\n"
                "print((time.process_time() - c) / (time.monotonic() - w))")
        done = subprocess.run([sys.executable, "-c", spin], preexec_fn=enter, capture_output=True, text=True, check=True)
        assert float(done.stdout) < 0.2, done.stdout
        sample = cgroup.sample()
        assert sample.memory_peak >= 19 * 2**20
        assert sample.throttled_seconds is not None and sample.throttled_seconds > 0.5
        assert sample.cpu_seconds > 0.1
        left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=enter,
                                start_new_session=True)
        time.sleep(0.2)
    finally:
        removed = cgroup.remove()
    assert removed and all(not p.exists() for p in cgroup.paths)
    # whatever still ran in it was stopped with it
    assert left.wait(timeout=5) == -9


def test_the_rlimit_fallback_makes_a_large_allocation_fail() -> None:
    enter = Placement(address_space=256 * 2**20).preexec()
    hog = subprocess.run([sys.executable, "-c", "b = bytearray(1024 * 2**20)"], preexec_fn=enter,
                         capture_output=True, text=True, check=False)
    assert hog.returncode == 1 and "MemoryError" in hog.stderr
    assert subprocess.run([sys.executable, "-c", "b = bytearray(1024 * 2**20)"], check=False).returncode == 0


def test_placement_that_cannot_be_entered_never_starts_the_process(tmp_path: Path) -> None:
    with pytest.raises(subprocess.SubprocessError):
        subprocess.run(["true"], preexec_fn=Placement((tmp_path / "gone",)).preexec(), check=False)
    assert Placement().preexec() is None


# -- what the live table shows -------------------------------------------------------------------


def test_the_live_table_shows_each_running_tasks_cpu_and_memory_against_its_limits() -> None:
    class Screen:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return True

    run = ParallelRun.model_validate(run_with(
        [{"name": "hog", "prompt": "p", "resources": {"limits": {"memory": "20Mi", "cpu": "100m"}}},
         {"name": "calm", "prompt": "p"}]))
    usage = ResourceUsage(enforced_by="cgroup v1", cpu_cores=0.098, cpu_seconds=1.2, memory_bytes=18 * 2**20,
                          memory_peak_bytes=19 * 2**20)
    run.status = ParallelRunStatus(tasks={
        "hog": TaskStatus(phase="Running", resource_usage=usage),
        "calm": TaskStatus(phase="Running", resource_usage=usage.model_copy(update={"memory_bytes": 5 * 2**20})),
    })
    screen = Screen()
    Progress(run, live=True, out=screen).tick({"hog": time.monotonic(), "calm": time.monotonic()})
    hog = next(line for line in screen.text.splitlines() if " hog " in line)
    calm = next(line for line in screen.text.splitlines() if " calm " in line)
    assert "0.10/100m CPU  18.0Mi/20.0Mi" in hog
    assert "0.10 CPU  5.0Mi" in calm
