"""Fitness from a report entry: zero unless everything is right, geomean otherwise."""
from __future__ import annotations

import math

from avo_harness.evolve.fitness import Fitness, accepts, from_report, geomean, out_of_time

PASSED = {"correctness": {"outcome": "passed", "examples": 5},
          "benchmarks": {"a": {"outcome": "passed", "tflops": 2.0},
                         "b": {"outcome": "passed", "tflops": 8.0}}}


def test_geomean_of_a_passing_candidate() -> None:
    fit = from_report(PASSED)
    assert fit.passed and fit.scores == {"a": 2.0, "b": 8.0}
    assert math.isclose(fit.geomean, 4.0)


def test_correctness_failure_zeroes_every_config() -> None:
    entry = {**PASSED, "correctness": {"outcome": "failed", "failure": {
        "rule": "tolerance", "message": "max abs error 1 > tolerance\nmore"}}}
    fit = from_report(entry)
    assert not fit.passed and fit.geomean == 0.0 and set(fit.scores.values()) == {0.0}
    assert fit.reason == "correctness: tolerance: max abs error 1 > tolerance"


def test_a_wrong_timed_output_zeroes_the_candidate() -> None:
    entry = {**PASSED, "benchmarks": {**PASSED["benchmarks"], "b": {
        "outcome": "failed", "rule": "tolerance", "message": "timed output wrong"}}}
    fit = from_report(entry)
    assert not fit.passed and fit.reason == "benchmark b: timed output wrong"


def test_missing_report_and_empty_benchmarks() -> None:
    assert not from_report(None).passed
    assert not from_report({**PASSED, "benchmarks": {}}).passed


def test_commit_rule_accepts_ties_and_honours_the_margin() -> None:
    assert accepts(Fitness(True, None, {}, 4.0), 4.0, 0.0)
    assert not accepts(Fitness(True, None, {}, 3.9), 4.0, 0.0)
    assert accepts(Fitness(True, None, {}, 3.9), 4.0, 0.05)
    assert not accepts(Fitness(False, "x", {}, 9.0), 4.0, 0.0)
    assert accepts(Fitness(True, None, {}, 1.0), None, 0.0)
    assert geomean([1.0, 0.0]) == 0.0


HARNESS = {"outcome": "failed", "rule": "harness-error", "message": "references: CUDA OOM"}


def test_a_harness_fault_is_not_the_candidates_failure() -> None:
    entry = {**PASSED, "correctness": {"outcome": "failed", "failure": HARNESS}}
    fit = from_report(entry)
    assert fit.harness_error and not fit.passed and fit.geomean == 0.0
    assert fit.reason == "harness error: correctness: references: CUDA OOM"
    fit = from_report({**PASSED, "benchmarks": {**PASSED["benchmarks"], "b": HARNESS}})
    assert fit.harness_error and fit.reason == "harness error: benchmark b: references: CUDA OOM"
    missing = from_report(None)
    assert missing.harness_error and "no entry" in (missing.reason or "")
    assert not from_report(PASSED).harness_error


def test_the_candidates_own_failure_outweighs_a_harness_fault() -> None:
    entry = {"correctness": {"outcome": "failed", "failure": {"rule": "tolerance",
                                                               "message": "wrong"}},
             "benchmarks": {"a": HARNESS}}
    fit = from_report(entry)
    assert not fit.harness_error and fit.reason == "correctness: tolerance: wrong"
    wrong = {**PASSED, "benchmarks": {"a": HARNESS, "b": {"outcome": "failed",
                                                          "rule": "tolerance",
                                                          "message": "timed output wrong"}}}
    assert not from_report(wrong).harness_error


CUT = {"outcome": "cut", "reason": "cut: slower: at most 1 TFLOP/s geomean ..."}


def test_a_cut_candidate_keeps_its_partial_scores_and_is_never_committed() -> None:
    entry = {**PASSED, "benchmarks": {"a": PASSED["benchmarks"]["a"], "b": CUT, "c": CUT}}
    fit = from_report(entry)
    assert fit.cut == "slower" and not fit.passed and not fit.harness_error
    assert fit.reason == "cut: slower (1 of 3 configurations timed)"
    assert fit.scores == {"a": 2.0} and fit.geomean == 0.0
    assert not accepts(fit, None, 0.0) and not accepts(fit, 0.001, 0.5)
    assert from_report(PASSED).cut is None


def test_a_failure_or_a_harness_fault_outweighs_a_cut() -> None:
    wrong = {"outcome": "failed", "rule": "tolerance", "message": "timed output wrong"}
    fit = from_report({**PASSED, "benchmarks": {"a": wrong, "b": CUT}})
    assert fit.cut is None and fit.reason == "benchmark a: timed output wrong"
    fit = from_report({**PASSED, "benchmarks": {"a": HARNESS, "b": CUT}})
    assert fit.cut is None and fit.harness_error


def test_an_evaluation_the_time_budget_ended_is_a_cut() -> None:
    fit = out_of_time(70.0)
    assert fit.cut == "time budget" and not fit.passed and not fit.harness_error
    assert fit.reason == ("cut: time budget (the evaluation was ended after 70 s, the time the "
                          "run had left)")
