"""The built-in operator against random search: evaluations needed to find the best.

    python benchmarks/operator_search.py --trials 200 --out benchmarks/results/operator-search.json

Both search the seed attention candidate's declared space (its TUNABLES and
CONSTRAINTS) under the loop's own commit rule (``fitness.accepts``). The fitness
of a configuration comes from a random landscape per trial: a main effect per
tunable value plus pairwise interactions (log-normal, so the best is unique), the
shape real kernel tuning spaces have (block sizes interact with warps and stages).
Random search draws allowed, not yet evaluated configurations uniformly. Reported:
evaluations until the global optimum is evaluated, and until a configuration
within 2% of it is, over the same landscapes for both.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

from avo_harness.evolve.fitness import Fitness, accepts
from avo_harness.evolve.lineage import Record, source_hash
from avo_harness.evolve.operators import OperatorExhausted, VariationContext
from avo_harness.evolve.operators.builtin import BuiltinOperator
from avo_harness.tasks import get_task
from avo_harness.tunables import Space, read_space

ROOT = Path(__file__).resolve().parent.parent

SEED_SOURCE = (ROOT / "candidates" / "attention" / "seed.py").read_text()


def landscape(space: Space, rng: random.Random) -> Callable[[dict[str, Any]], float]:
    names = list(space.choices)
    main = {(n, c): rng.gauss(0, 0.3) for n in names for c in space.choices[n]}
    pairs = {(a, ca, b, cb): rng.gauss(0, 0.15)
             for a, b in itertools.combinations(names, 2)
             for ca in space.choices[a] for cb in space.choices[b]}

    def fitness(values: dict[str, Any]) -> float:
        log = sum(main[(n, values[n])] for n in names)
        log += sum(pairs[(a, values[a], b, values[b])] for a, b in itertools.combinations(names, 2))
        return math.exp(log)

    return fitness


def _record(i: int, source: str, score: float, committed: bool, parents: list[int]) -> Record:
    return Record(id=i, run_id=1, generation=i, name=f"c{i}", parents=parents,
                  operator="builtin", rationale="", source=source,
                  source_hash=source_hash(source), status="passed", committed=committed,
                  reason=None, scores={"x": score}, geomean=score, report=None,
                  operator_s=0.0, eval_s=0.0)


def search_builtin(space: Space, fitness: Callable[[dict[str, Any]], float], target: float,
                   budget: int, seed: int) -> tuple[int | None, int | None]:
    """Evaluations until the optimum and until within 2% of it (None: not within budget)."""
    records = [_record(0, SEED_SOURCE, fitness(space.values), True, [])]
    op, task = BuiltinOperator(), get_task("attention")
    hit_best = hit_near = None
    for i in range(1, budget):
        score = records[-1].geomean or 0.0
        if hit_near is None and score >= 0.98 * target:
            hit_near = i
        if score >= target:
            hit_best = i
            break
        context = VariationContext(task, records, random.Random(f"{seed}:{i}"), i)
        try:
            proposal = op.propose(context)
        except OperatorExhausted:
            break
        values = read_space(proposal.source).values
        score = fitness(values)
        best = max(r.geomean or 0.0 for r in records if r.committed)
        commit = accepts(Fitness(True, None, {"x": score}, score), best, 0.0)
        records.append(_record(i, proposal.source, score, commit, proposal.parents))
    return hit_best, hit_near


def search_random(points: list[dict[str, Any]], fitness: Callable[[dict[str, Any]], float],
                  target: float, start: dict[str, Any], seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    order = [p for p in points if p != start]
    rng.shuffle(order)
    hit_near = None
    for i, values in enumerate([start, *order], start=1):
        score = fitness(values)
        if hit_near is None and score >= 0.98 * target:
            hit_near = i
        if score >= target:
            return i, hit_near or i
    raise AssertionError("the optimum is among the points")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    space = read_space(SEED_SOURCE)
    names = list(space.choices)
    points = [dict(zip(names, p)) for p in itertools.product(*space.choices.values())]
    points = [p for p in points if space.allows(p)]
    results: dict[str, dict[str, list[int | None]]] = {
        "builtin": {"optimum": [], "within_2pct": []},
        "random": {"optimum": [], "within_2pct": []}}
    for trial in range(args.trials):
        fitness = landscape(space, random.Random(trial))
        target = max(fitness(p) for p in points)
        for name, (best, near) in (
                ("builtin", search_builtin(space, fitness, target, len(points) + 1, trial)),
                ("random", search_random(points, fitness, target, space.values, trial))):
            results[name]["optimum"].append(best)
            results[name]["within_2pct"].append(near)

    def stats(values: list[int | None]) -> dict[str, Any]:
        found = [v for v in values if v is not None]
        return {"median": statistics.median(found) if found else None,
                "mean": statistics.fmean(found) if found else None,
                "found": f"{len(found)}/{len(values)}"}

    summary = {name: {goal: stats(v) for goal, v in r.items()} for name, r in results.items()}
    document = {"what": __doc__.strip().splitlines()[0], "space_size": len(points),
                "trials": args.trials, "command": "python benchmarks/operator_search.py "
                + " ".join(sys.argv[1:]), "summary": summary}
    if args.out:
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"space: {len(points)} allowed configurations; {args.trials} landscapes")
    print(f"{'operator':10}{'optimum median':>16}{'mean':>8}{'found':>9}"
          f"{'2% median':>12}{'mean':>8}")
    for name, s in summary.items():
        o, n = s["optimum"], s["within_2pct"]
        print(f"{name:10}{o['median']:>16}{o['mean']:>8.1f}{o['found']:>9}"
              f"{n['median']:>12}{n['mean']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
