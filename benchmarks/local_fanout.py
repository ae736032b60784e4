"""How much braid itself costs per task in local mode.

Runs a ParallelRun of N no-op `script` tasks (a chain of dependencies every `--chain`
tasks) against a throw-away repository and reports wall time, time per task and the
peak memory of the `braid run` process. The agent does nothing, so what is measured is
braid: scheduling, the object cache, workspaces, commits, pushes and the merge.

    python benchmarks/local_fanout.py --tasks 40 --parallel 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=40)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--chain", type=int, default=5, help="every Nth task depends on the one before it")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="braid-bench-"))
    repo = root / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x",
           "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    for i in range(200):
        (repo / f"file{i}.txt").write_text(f"line {i}\n" * 50)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "base"], check=True, env=env)

    tasks = []
    for i in range(args.tasks):
        task = {"name": f"t{i}", "prompt": "noop",
                "agent": {"script": {"steps": [{"op": "write", "path": f"out/t{i}.txt", "content": f"{i}\n"}]}}}
        if i % args.chain and i:
            task["dependsOn"] = [f"t{i - 1}"]
        tasks.append(task)
    run = {"apiVersion": "braid.dev/v1alpha1", "kind": "ParallelRun", "metadata": {"name": "bench"},
           "spec": {"repo": {"url": str(repo)}, "maxParallel": args.parallel, "agent": {"backend": "script"},
                    "tasks": tasks}}
    run_file = root / "run.yaml"
    run_file.write_text(yaml.safe_dump(run))

    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "braid", "run", str(run_file), "--local", "--no-progress",
                           "--cache-dir", str(root / "cache"), "--state-dir", str(root / "state"),
                           "--status-out", str(root / "status.json")], capture_output=True, text=True)
    wall = time.monotonic() - start
    status = json.loads((root / "status.json").read_text())
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "tasks": args.tasks, "maxParallel": args.parallel, "phase": status["phase"], "exit": proc.returncode,
        "wallSeconds": round(wall, 2), "secondsPerTask": round(wall / args.tasks, 3),
        "tasksPerSecond": round(args.tasks / wall, 2), "merged": len(status["merge"]["merged"]),
        "peakChildRSSMiB": round(peak_kib / 1024, 1),
    }, indent=2))
    return 0 if status["phase"] == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
