"""What each scheduling strategy costs: makespan, and tasks finished within a budget.

Replays random task graphs through braid's own scheduler (`plan.decide` with the order of
`plan.schedule.ranks`), one event at a time: a task takes as long and costs as much as drawn
for it, and a slot frees when it ends. Pure and deterministic for a seed; no agents run.

    python benchmarks/makespan.py --graphs 200 --tasks 30 --parallel 4

Makespan is given as a ratio to the lower bound max(longest weighted chain, total work /
maxParallel): 1.00 is as good as any schedule can be. "within budget" counts the tasks that
end before half the graph's total cost is spent, the case costFirst is for.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics

from braid.plan import Node, decide
from braid.plan.schedule import STRATEGIES, Ranked, ranks


def random_graph(rng: random.Random, size: int) -> list[Ranked]:
    tasks: list[Ranked] = []
    for i in range(size):
        earlier = [t.name for t in tasks]
        deps = tuple(sorted(rng.sample(earlier, k=min(len(earlier), rng.choice((0, 0, 1, 1, 2))))))
        cost = round(rng.lognormvariate(-1.0, 1.0), 3)
        tasks.append(Ranked(f"t{i:03d}", deps, rng.choice((0, 0, 0, 5, 10)), cost, rng.randint(50, 5000)))
    return tasks


def simulate(tasks: list[Ranked], duration: dict[str, float], parallel: int,
             strategy: str) -> tuple[float, list[tuple[float, float]]]:
    """The makespan, and (end time, cost) of each task in the order they ended."""
    nodes = [Node(t.name, t.depends_on) for t in tasks]
    rank = ranks(tasks, strategy)
    cost = {t.name: t.estimated_cost_usd or 0.0 for t in tasks}
    phases: dict[str, str] = {}
    running: list[tuple[float, str]] = []
    now, ended = 0.0, []
    while True:
        for name in decide(nodes, phases, parallel, rank=rank).start:
            phases[name] = "Running"
            heapq.heappush(running, (now + duration[name], name))
        if not running:
            return now, ended
        now, name = heapq.heappop(running)
        phases[name] = "Succeeded"
        ended.append((now, cost[name]))


def lower_bound(tasks: list[Ranked], duration: dict[str, float], parallel: int) -> float:
    finish: dict[str, float] = {}
    for t in tasks:  # random_graph lists dependencies first
        finish[t.name] = duration[t.name] + max((finish[d] for d in t.depends_on), default=0.0)
    return max(max(finish.values()), sum(duration.values()) / parallel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ratio: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    within: dict[str, list[int]] = {s: [] for s in STRATEGIES}
    for _ in range(args.graphs):
        tasks = random_graph(rng, args.tasks)
        duration = {t.name: rng.lognormvariate(3.0, 0.8) for t in tasks}
        bound = lower_bound(tasks, duration, args.parallel)
        budget = sum(t.estimated_cost_usd or 0.0 for t in tasks) / 2
        for strategy in STRATEGIES:
            makespan, ended = simulate(tasks, duration, args.parallel, strategy)
            ratio[strategy].append(makespan / bound)
            spent, count = 0.0, 0
            for _, cost in ended:
                spent += cost
                if spent > budget:
                    break
                count += 1
            within[strategy].append(count)
    print(f"{args.graphs} graphs of {args.tasks} tasks, maxParallel {args.parallel}, seed {args.seed}")
    print(f"{'strategy':<14}{'makespan/bound (mean)':>24}{'p95':>8}{'within budget (mean)':>24}")
    for strategy in STRATEGIES:
        values = sorted(ratio[strategy])
        p95 = values[int(0.95 * (len(values) - 1))]
        print(f"{strategy:<14}{statistics.mean(values):>24.3f}{p95:>8.3f}"
              f"{statistics.mean(within[strategy]):>24.1f}")


if __name__ == "__main__":
    main()
