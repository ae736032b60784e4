"""Holding an agent's processes to their task's CPU and memory limits on one machine.

Each attempt gets a cgroup of its own, made under braid's own cgroup: cgroup v2 where its
memory and cpu controllers can be used, else the memory and cpu hierarchies of cgroup v1.
The agent's processes join it before they run anything (the agent CLI, or each command of
the built-in loop; bwrap and everything inside the sandbox with them). braid's own
processes stay outside: git, the commit and the push never run short of memory, so an
agent killed for memory still has its work pushed, as the runner container on the cluster.

Where no cgroup can be used, memory falls back to RLIMIT_AS, a cap on each process's
address space (not on what the processes use together, and counted in virtual memory).
CPU has no such fallback: RLIMIT_CPU caps the CPU seconds a process may use in all, not
its share of a CPU, so a CPU limit is then not enforced at all, and braid says so.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from braid.api import ResourceRequirements
from braid.api.quantity import cpu_cores, memory_bytes

CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000
"""The kernel's smallest quota: 1 ms per 100 ms period, i.e. 10m."""
ENFORCED = ("cpu", "memory")


class LimitsUnavailable(RuntimeError):
    """A limit cannot be enforced the way it was asked for."""


@dataclass(frozen=True)
class Limits:
    """A task's limits as numbers: what a cgroup or an rlimit is set to."""

    memory: int | None = None
    """limits.memory in bytes."""
    cpu: Decimal | None = None
    """limits.cpu in cores (0.1 for 100m)."""
    cpu_weight: Decimal | None = None
    """requests.cpu in cores: the agent's share of the CPU next to others, when CPUs are busy."""
    unenforced: tuple[str, ...] = ()
    """Other resources the task limits (ephemeral-storage, ...): a local run does not enforce them."""

    @classmethod
    def of(cls, resources: ResourceRequirements | None) -> Limits:
        if resources is None:
            return cls()
        limits, requests = resources.limits or {}, resources.requests or {}
        return cls(
            memory=memory_bytes(limits["memory"]) if "memory" in limits else None,
            cpu=cpu_cores(limits["cpu"]) if "cpu" in limits else None,
            cpu_weight=cpu_cores(requests["cpu"]) if "cpu" in requests else None,
            unenforced=tuple(sorted(k for k in limits if k not in ENFORCED)),
        )

    @property
    def wanted(self) -> set[str]:
        """The controllers these limits need."""
        return {name for name, value in (("memory", self.memory), ("cpu", self.cpu or self.cpu_weight))
                if value is not None}


# -- where braid's cgroups are ---------------------------------------------------------------


@dataclass(frozen=True)
class Hierarchy:
    version: int
    controllers: frozenset[str]
    """v1: the controllers mounted together; v2: empty (read from cgroup.controllers)."""
    base: Path
    """braid's own cgroup in this hierarchy, as a directory."""


def hierarchies(proc_cgroup: str, mountinfo: str) -> list[Hierarchy]:
    """The cgroups this process is in (the text of /proc/self/cgroup), found where they are mounted
    (the text of /proc/self/mountinfo). A hierarchy that is not mounted, or mounted only below the
    process's own cgroup, is left out."""
    mounts: list[tuple[int, frozenset[str], str, str]] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3 or after[0] not in ("cgroup", "cgroup2"):
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if after[0] == "cgroup2":
            mounts.append((2, frozenset(), root, point))
        else:
            options = set(after[2].split(","))
            mounts.append((1, frozenset(options - {"rw", "ro"}), root, point))
    out: list[Hierarchy] = []
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        version = 2 if names == "" else 1
        controllers = frozenset(n for n in names.split(",") if n)
        for mversion, options, root, point in mounts:
            if mversion != version or (version == 1 and not controllers <= options):
                continue
            rel = os.path.relpath(path, root) if path.startswith(root) else None
            if rel is None or rel.startswith(".."):
                continue
            base = Path(point) if rel == "." else Path(point) / rel
            out.append(Hierarchy(version, controllers, base))
            break
    return out


def _unescape(text: str) -> str:
    """mountinfo writes a space as \\040, a tab as \\011, a newline as \\012 and a backslash as \\134."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


@dataclass(frozen=True)
class CgroupSetup:
    """How this machine holds agents to their limits: which cgroups attempts are made under."""

    version: int | None = None
    """2 or 1; None: no cgroup can be used."""
    bases: dict[str, Path] = field(default_factory=dict)
    """controller (memory, cpu, cpuacct) -> the cgroup an attempt's cgroup is made in."""
    problems: tuple[str, ...] = ()
    """Why a controller (or every cgroup) cannot be used."""

    def has(self, controller: str) -> bool:
        return controller in self.bases

    @property
    def name(self) -> str:
        return f"cgroup v{self.version}" if self.version else "none"

    def warning(self, wanted: set[str], unenforced: Iterable[str] = ()) -> str | None:
        """The one line to print when a limit the run asks for is not held by a cgroup, or None."""
        missing = sorted(c for c in wanted if not self.has(c))
        others = sorted(set(unenforced))
        if not missing and not others:
            return None
        why = "; ".join(self.problems) or "no cgroup can be used"
        held = [c for c in sorted(wanted) if self.has(c)]
        parts = [f"{', '.join('limits.' + c for c in held)} by {self.name}"] if held else []
        if "memory" in missing:
            parts.append("limits.memory as RLIMIT_AS only (a cap on each process's address space, not on the "
                         "memory the agent's processes use together; an allocation past it fails instead of "
                         "ending the task OOMKilled)")
        if "cpu" in missing:
            parts.append("limits.cpu and requests.cpu NOT enforced (RLIMIT_CPU caps a process's total CPU "
                         "seconds, which is not a CPU quota)")
        if others:
            parts.append(f"{', '.join('limits.' + o for o in others)} NOT enforced locally")
        return f"WARNING: resource limits: {'; '.join(parts)} ({why})"


Probe = Callable[[Path, str], str | None]
"""(a cgroup directory, a controller) -> why no attempt cgroup can be made and entered there, or None."""


def plan_cgroups(found: list[Hierarchy], probe: Probe, v2_controllers: Callable[[Path], set[str]]) -> CgroupSetup:
    """Choose the cgroups to use: v2 when its memory and cpu controllers are there for braid,
    else v1's memory and cpu (and cpuacct, for CPU time) hierarchies, each one that works."""
    if not found:
        return CgroupSetup(problems=("no cgroup file system is mounted",))
    problems: list[str] = []
    unified = next((h for h in found if h.version == 2), None)
    if unified is not None:
        available = v2_controllers(unified.base)
        if {"memory", "cpu"} <= available:
            problem = probe(unified.base, "memory")
            if problem is None:
                return CgroupSetup(2, {c: unified.base for c in ("memory", "cpu")})
            problems.append(f"cgroup v2 at {unified.base}: {problem}")
        elif not any(h.version == 1 and h.controllers & {"memory", "cpu"} for h in found):
            lacking = " and ".join(c for c in ("memory", "cpu") if c not in available)
            problems.append(f"cgroup v2 at {unified.base} has no {lacking} controller for braid "
                            "(run braid in a cgroup delegated to it, e.g. systemd-run --user --scope -p Delegate=yes)")
    bases: dict[str, Path] = {}
    for controller in ("memory", "cpu", "cpuacct"):
        mounted = next((h for h in found if h.version == 1 and controller in h.controllers), None)
        if mounted is None:
            if controller != "cpuacct" and unified is None:
                problems.append(f"no cgroup v1 {controller} hierarchy is mounted")
            continue
        problem = probe(mounted.base, controller)
        if problem is None:
            bases[controller] = mounted.base
        elif controller != "cpuacct":
            problems.append(f"cgroup v1 {controller} at {mounted.base}: {problem}")
    if not {"memory", "cpu"} & set(bases):
        return CgroupSetup(None, {}, tuple(problems))
    return CgroupSetup(1, bases, tuple(problems))


def _v2_controllers(base: Path) -> set[str]:
    try:
        return set((base / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _probe(base: Path, controller: str) -> str | None:
    """Make a cgroup in `base`, run a process in it, remove it: whether attempts can have one there."""
    if controller in ("memory", "cpu") and (base / "cgroup.controllers").exists():
        problem = _enable_v2_controllers(base)
        if problem:
            return problem
    probe = base / f"braid-probe-{os.getpid()}"
    try:
        probe.mkdir(exist_ok=True)
    except OSError as exc:
        return f"cannot create a cgroup: {exc.strerror}"
    try:
        done = subprocess.run([sys.executable, "-c", ""], preexec_fn=Placement((probe,)).preexec(),
                              capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            return "cannot move a process into a new cgroup"
    except (OSError, subprocess.SubprocessError):
        return "cannot move a process into a new cgroup"
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    return None


def _enable_v2_controllers(base: Path) -> str | None:
    """cgroup v2 lets children of `base` use memory and cpu only when base's subtree_control enables
    them, and enabling them needs base to hold no process: braid moves itself into a leaf first."""
    control = base / "cgroup.subtree_control"
    try:
        if {"memory", "cpu"} <= set(control.read_text().split()):
            return None
    except OSError as exc:
        return f"cannot read {control}: {exc.strerror}"
    try:
        control.write_text("+memory +cpu")
        return None
    except OSError:
        pass
    leaf = base / "braid"
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        control.write_text("+memory +cpu")
        return None
    except OSError as exc:
        return f"cannot enable the memory and cpu controllers for braid's cgroups: {exc.strerror}"


def detect() -> CgroupSetup:
    """This machine's cgroups as braid can use them, checked by making one."""
    try:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError as exc:
        return CgroupSetup(problems=(f"cannot read /proc/self: {exc.strerror}",))
    return plan_cgroups(hierarchies(proc_cgroup, mountinfo), _probe, _v2_controllers)


# -- one attempt's cgroup -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    cpu_seconds: float
    memory: int
    memory_peak: int
    throttled_seconds: float | None


@dataclass
class Cgroup:
    """The cgroup of one attempt: a directory per hierarchy (one under cgroup v2)."""

    version: int
    dirs: dict[str, Path]
    peak: int = 0

    @classmethod
    def create(cls, setup: CgroupSetup, name: str, limits: Limits) -> Cgroup:
        """Make the cgroup `name` in every hierarchy of `setup` and set `limits`. Raises OSError."""
        if setup.version is None:
            raise LimitsUnavailable("no cgroup can be used here")
        dirs: dict[str, Path] = {}
        made: list[Path] = []
        try:
            for controller, base in setup.bases.items():
                path = base / name
                if path not in made:
                    path.mkdir()
                    made.append(path)
                dirs[controller] = path
            cgroup = cls(setup.version, dirs)
            cgroup._set(limits)
        except OSError:
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return cgroup

    @classmethod
    def attach(cls, paths: Iterable[Path]) -> Cgroup:
        """The cgroup made for this attempt by the launcher (agent-run gets its directories)."""
        dirs: dict[str, Path] = {}
        version = 1
        for path in paths:
            if (path / "cgroup.controllers").exists():
                version = 2
                dirs.update({"memory": path, "cpu": path})
                continue
            for controller, probe in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us"),
                                      ("cpuacct", "cpuacct.usage")):
                if (path / probe).exists():
                    dirs[controller] = path
        return cls(version, dirs)

    @property
    def paths(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    def _set(self, limits: Limits) -> None:
        mem, cpu = self.dirs.get("memory"), self.dirs.get("cpu")
        if self.version == 2:
            if mem is not None and limits.memory is not None:
                _write(mem / "memory.max", str(limits.memory))
                if (mem / "memory.swap.max").exists():
                    _write(mem / "memory.swap.max", "0")
            if cpu is not None and limits.cpu is not None:
                _write(cpu / "cpu.max", f"{_quota_us(limits.cpu)} {CPU_PERIOD_US}")
            if cpu is not None and limits.cpu_weight is not None:
                # Kubernetes' conversion of CPU shares to a cgroup v2 weight
                shares = _shares(limits.cpu_weight)
                _write(cpu / "cpu.weight", str(1 + (shares - 2) * 9999 // 262142))
            return
        if mem is not None and limits.memory is not None:
            _write(mem / "memory.limit_in_bytes", str(limits.memory))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory))
            else:
                with contextlib.suppress(OSError):
                    _write(mem / "memory.swappiness", "0")
        if cpu is not None and limits.cpu is not None:
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(_quota_us(limits.cpu)))
        if cpu is not None and limits.cpu_weight is not None:
            _write(cpu / "cpu.shares", str(_shares(limits.cpu_weight)))

    def pids(self) -> list[int]:
        out: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):
                out.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return sorted(out)

    def oom_kills(self) -> int | None:
        """Processes the kernel killed for this cgroup's memory limit; None when the kernel does not count them."""
        mem = self.dirs.get("memory")
        if mem is None:
            return None
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        value = _keyed(_read(mem / name)).get("oom_kill")
        return int(value) if value is not None else None

    def limit_hit(self) -> bool:
        """Whether the memory limit was reached at all (v1's failcnt, v2's max events)."""
        mem = self.dirs.get("memory")
        if mem is None:
            return False
        if self.version == 2:
            return int(_keyed(_read(mem / "memory.events")).get("max", "0")) > 0
        return any(int(_read(mem / name) or 0) > 0 for name in ("memory.failcnt", "memory.memsw.failcnt"))

    def out_of_memory(self, killed: bool) -> bool:
        """Whether the agent ran out of memory: the kernel counted an OOM kill here, or (a kernel that
        does not count them) the limit was hit and the agent died by SIGKILL."""
        kills = self.oom_kills()
        if kills is not None:
            return kills > 0
        return killed and self.limit_hit()

    def sample(self) -> Sample:
        mem, cpu, acct = self.dirs.get("memory"), self.dirs.get("cpu"), self.dirs.get("cpuacct")
        memory = cpu_seconds = 0.0
        throttled = None
        peak_file = None
        if self.version == 2:
            path = mem or cpu
            if path is not None:
                memory = float(_read(path / "memory.current") or 0)
                peak_file = path / "memory.peak"
                stat = _keyed(_read(path / "cpu.stat"))
                cpu_seconds = int(stat.get("usage_usec", 0)) / 1e6
                if "throttled_usec" in stat:
                    throttled = int(stat["throttled_usec"]) / 1e6
        else:
            if mem is not None:
                memory = float(_read(mem / "memory.usage_in_bytes") or 0)
                peak_file = mem / "memory.max_usage_in_bytes"
            if acct is not None:
                cpu_seconds = int(_read(acct / "cpuacct.usage") or 0) / 1e9
            else:
                cpu_seconds = proc_usage(self.pids())[0]
            if cpu is not None:
                stat = _keyed(_read(cpu / "cpu.stat"))
                if "throttled_time" in stat:
                    throttled = int(stat["throttled_time"]) / 1e9
            if mem is None:
                memory = float(proc_usage(self.pids())[1])
        peak = int(_read(peak_file) or 0) if peak_file is not None and peak_file.exists() else 0
        self.peak = max(self.peak, peak, int(memory))
        return Sample(cpu_seconds, int(memory), self.peak, throttled)

    def remove(self, timeout: float = 5.0) -> bool:
        """Stop whatever still runs in the cgroup and remove it; False when something was left."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            kill = next((p / "cgroup.kill" for p in self.paths if (p / "cgroup.kill").exists()), None)
            if kill is not None:
                with contextlib.suppress(OSError):
                    _write(kill, "1")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        removed = True
        for path in self.paths:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                removed = False
        return removed


def _quota_us(cores: Decimal) -> int:
    return max(MIN_CPU_QUOTA_US, int(cores * CPU_PERIOD_US))


def _shares(cores: Decimal) -> int:
    return max(2, min(262144, int(cores * 1024)))


def _write(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value.strip()
    return out


# -- the agent's side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where the agent's processes go before they run anything: the attempt's cgroups, or (the
    fallback) an address space limit on each of them."""

    cgroups: tuple[Path, ...] = ()
    address_space: int | None = None

    def preexec(self) -> Callable[[], None] | None:
        """The function a subprocess runs between fork and exec, or None when there is nothing to do.

        It fails (and the process never starts) when the cgroup cannot be entered: an agent
        never runs outside the limits it was given.
        """
        if not self.cgroups and self.address_space is None:
            return None
        procs = [str(path / "cgroup.procs") for path in self.cgroups]
        limit = self.address_space

        def enter() -> None:
            pid = str(os.getpid()).encode()
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        return enter


# -- /proc, where there is no cgroup to ask ------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = resource.getpagesize()


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def proc_usage(pids: Iterable[int]) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of these processes together."""
    cpu, rss = 0.0, 0
    for pid in pids:
        fields = _stat(pid)
        if fields is None or len(fields) < 22:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / _TICK
        rss += int(fields[21]) * _PAGE
    return cpu, rss


def descendants(root: int) -> list[int]:
    """Every process below `root` (not root itself)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out
