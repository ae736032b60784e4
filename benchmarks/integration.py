"""What integration costs: verify runs of the bisection, and merge-tree conflict checks.

    python benchmarks/integration.py --sizes 8 32 --branches 50

Bisection: for every position of a single culprit in a merge order of N tasks, the verify
runs `plan.verify` asks for (the whole order, then halving), against ceil(log2 N) + 1.

Conflict checks: a real repository with `--branches` task branches, every fifth touching a
shared file; the time of one task's check (`git merge-tree --write-tree` of its branch
against every other, what the runner does after a push) and of every pair.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
import time
from pathlib import Path

from braid.plan.verify import culprit, next_prefix


def verify_runs(size: int, bad: int) -> int:
    """Runs until the culprit at 1-based position `bad` is named (a prefix fails once it holds it)."""
    results: dict[int, bool] = {}
    while (k := next_prefix(size, results)) is not None:
        results[k] = k < bad
    found = culprit(size, results)
    assert found is not None and found[1] == bad, (size, bad, found)
    return len(results)


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def make_branches(repo: Path, count: int) -> list[str]:
    git(repo, "init", "-q", "-b", "main")
    (repo / "shared.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    names = []
    for i in range(count):
        name = f"task-{i:03d}"
        git(repo, "checkout", "-q", "-b", name, "main")
        (repo / f"file-{i:03d}.txt").write_text(f"{name}\n")
        if i % 5 == 0:
            text = (repo / "shared.txt").read_text().replace("line 50\n", f"line 50 by {name}\n")
            (repo / "shared.txt").write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", name)
        names.append(name)
    return names


def conflicts(repo: Path, a: str, b: str) -> bool:
    proc = subprocess.run(["git", "-C", str(repo), "merge-tree", "--write-tree", "--name-only", a, b],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--branches", type=int, default=50)
    args = parser.parse_args()
    for size in args.sizes:
        runs = [verify_runs(size, bad) for bad in range(1, size + 1)]
        print(f"bisection N={size}: verify runs min {min(runs)}, max {max(runs)}, mean {sum(runs) / size:.2f} "
              f"(bound ceil(log2 N)+1 = {math.ceil(math.log2(size)) + 1})")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        names = make_branches(repo, args.branches)
        start = time.perf_counter()
        found = sum(conflicts(repo, names[0], other) for other in names[1:])
        one = time.perf_counter() - start
        start = time.perf_counter()
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        clashing = sum(conflicts(repo, a, b) for a, b in pairs)
        every = time.perf_counter() - start
    print(f"merge-tree, {args.branches} branches: one task against the {len(names) - 1} others {one:.2f} s "
          f"({found} conflicting); all {len(pairs)} pairs {every:.2f} s ({clashing} conflicting), "
          f"{every / len(pairs) * 1000:.1f} ms per pair")


if __name__ == "__main__":
    main()
