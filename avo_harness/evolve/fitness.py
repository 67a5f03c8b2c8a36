"""Fitness: TFLOP/s per benchmark configuration, and their geometric mean.

A candidate that fails any correctness item, or whose timed output is wrong in
any configuration, scores zero everywhere: speed only counts when it is right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fitness:
    passed: bool
    reason: str | None
    scores: dict[str, float]
    geomean: float


def from_report(entry: dict[str, Any] | None) -> Fitness:
    """The fitness of one candidate's entry in an ``avo-harness/report/1`` document."""
    if entry is None:
        return Fitness(False, "the evaluation wrote no report for the candidate", {}, 0.0)
    benchmarks = entry.get("benchmarks", {})
    zeros = {name: 0.0 for name in benchmarks}
    correctness = entry.get("correctness", {})
    if correctness.get("outcome") != "passed":
        failure = correctness.get("failure") or {}
        why = failure.get("message") or correctness.get("message") or correctness.get("outcome")
        rule = failure.get("rule", correctness.get("outcome"))
        return Fitness(False, f"correctness: {rule}: {_one_line(why)}", zeros, 0.0)
    if not benchmarks:
        return Fitness(False, "no benchmark configuration was timed", {}, 0.0)
    for name, bench in benchmarks.items():
        if bench.get("outcome") != "passed" or not bench.get("tflops"):
            why = bench.get("message") or bench.get("reason") or bench.get("outcome")
            return Fitness(False, f"benchmark {name}: {_one_line(why)}", zeros, 0.0)
    scores = {name: float(bench["tflops"]) for name, bench in benchmarks.items()}
    return Fitness(True, None, scores, geomean(scores.values()))


def accepts(fitness: Fitness, best: float | None, margin: float) -> bool:
    """AVO's rule: correct, and at least as fast as the best committed (ties accepted)."""
    return fitness.passed and (best is None or fitness.geomean >= best * (1 - margin))


def geomean(values: Any) -> float:
    values = list(values)
    if not values or min(values) <= 0:
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _one_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:300] if lines else str(text)
