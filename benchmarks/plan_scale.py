"""Cost of the pure scheduling decision for large DAGs (what the operator runs each reconcile).

    python benchmarks/plan_scale.py --tasks 200
"""

from __future__ import annotations

import argparse
import random
import time

from braid.plan import Node, decide, validate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--repeat", type=int, default=200)
    args = p.parse_args()
    rng = random.Random(7)
    nodes = [Node(f"t{i}", tuple(f"t{j}" for j in rng.sample(range(i), min(i, 3)))) for i in range(args.tasks)]
    validate(nodes)
    phases = {n.name: rng.choice(["Pending", "Succeeded", "Running"]) for n in nodes}
    start = time.perf_counter()
    for _ in range(args.repeat):
        decide(nodes, phases, 8)
    per = (time.perf_counter() - start) / args.repeat
    print(f"decide() over {args.tasks} tasks: {per * 1000:.2f} ms per call")


if __name__ == "__main__":
    main()
