"""Fitness: TFLOP/s per benchmark configuration, and their geometric mean.

A candidate that fails any correctness item, or whose timed output is wrong in
any configuration, scores zero everywhere: speed only counts when it is right.
An item the harness itself failed to judge (its inputs, its references, the
sandbox) is no verdict on the candidate: the fitness says so, and the loop
evaluates the candidate again on ``--avo-resume``. A candidate whose evaluation
was cut short (the cascade: it could not reach the commit bar; or the run's time
budget) is neither committed nor failed: ``cut`` says which.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..results import CandidateResult

#: The report's rule for an item that failed through a fault of the harness's own.
HARNESS_RULE = "harness-error"
#: The outcome of a benchmark entry that the cascade left untimed (see cascade.py).
CUT = "cut"
#: Why an evaluation was cut short (``Fitness.cut``); each reason starts "cut: <why>".
SLOWER, TIME_BUDGET = "slower", "time budget"


@dataclass(frozen=True)
class Fitness:
    passed: bool
    reason: str | None
    scores: dict[str, float]
    geomean: float
    #: Not judged: the harness, not the candidate, failed (``reason`` names the cause).
    harness_error: bool = False
    #: SLOWER or TIME_BUDGET when the evaluation was cut short; ``scores`` holds what was
    #: timed, ``geomean`` is 0 (one over some configurations compares with none).
    cut: str | None = None


def harness_fault(cause: str, scores: dict[str, float] | None = None) -> Fitness:
    """The fitness of a candidate that the harness failed to judge."""
    return Fitness(False, f"harness error: {cause}", scores or {}, 0.0, harness_error=True)


def out_of_time(limit_s: float) -> Fitness:
    """The fitness of a candidate whose evaluation the run's time budget ended."""
    return Fitness(False, f"cut: {TIME_BUDGET} (the evaluation was ended after {limit_s:,.0f} s, "
                   "the time the run had left)", {}, 0.0, cut=TIME_BUDGET)


def from_report(entry: CandidateResult | Mapping[str, Any] | None) -> Fitness:
    """The fitness of one candidate's entry in an ``avo-harness/report/1`` document
    (``Report.entry``; its JSON is read as one). A failure of the candidate's own outweighs
    any harness fault: it is a verdict; both outweigh a cut, which the cascade makes only
    after items that passed."""
    entry = CandidateResult.of(entry)
    if entry is None:
        return harness_fault("the evaluation's report has no entry for the candidate")
    benchmarks = entry.benchmarks
    zeros = {name: 0.0 for name in benchmarks}
    failures = _failures(entry)
    own = [reason for reason, harness in failures if not harness]
    if own:
        return Fitness(False, own[0], zeros, 0.0)
    if failures:
        return harness_fault(failures[0][0], zeros)
    if not benchmarks:
        return Fitness(False, "no benchmark configuration was timed", {}, 0.0)
    scores = {name: float(bench.tflops or 0.0) for name, bench in benchmarks.items()
              if bench.outcome != CUT}
    if len(scores) < len(benchmarks):
        return Fitness(False, f"cut: {SLOWER} ({len(scores)} of {len(benchmarks)} "
                       "configurations timed)", scores, 0.0, cut=SLOWER)
    return Fitness(True, None, scores, geomean(scores.values()))


def _failures(entry: CandidateResult) -> list[tuple[str, bool]]:
    """Each item that did not pass, correctness first: why, and whether the harness failed it."""
    found = []
    correctness = entry.correctness
    if not correctness.passed:
        failure = correctness.failure
        why = _one_line((failure.message if failure else None) or correctness.message
                        or correctness.outcome)
        rule = failure.rule if failure is not None and failure.rule is not None \
            else correctness.outcome
        harness = rule == HARNESS_RULE
        found.append((f"correctness: {why}" if harness else f"correctness: {rule}: {why}",
                      harness))
    for name, bench in entry.benchmarks.items():
        if bench.outcome == CUT:
            continue
        if not bench.passed or not bench.tflops:
            found.append((f"benchmark {name}: {_one_line(bench.why())}",
                          bench.rule == HARNESS_RULE))
    return found


def commit_bar(best: float, margin: float) -> float:
    """The geomean a candidate must reach to be committed, given the best committed one."""
    return best * (1 - margin)


def accepts(fitness: Fitness, best: float | None, margin: float) -> bool:
    """AVO's rule: correct, and at least as fast as the best committed (ties accepted)."""
    return fitness.passed and (best is None or fitness.geomean >= commit_bar(best, margin))


def geomean(values: Any) -> float:
    values = list(values)
    if not values or min(values) <= 0:
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _one_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:300] if lines else str(text)
