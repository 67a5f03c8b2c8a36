"""The report's typed reading (``results.py``): a real report round-trips to the very JSON the
writers produced; a hostile or old one reads as empty fields, never as an exception."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from avo_harness.agent.views import report_text
from avo_harness.evolve.fitness import from_report
from avo_harness.evolve.precision import regression
from avo_harness.results import (SCHEMA, BenchResult, CandidateResult, Correctness, Failure,
                                 Report, candidate_entry, format_failure)


def _nodes(value: Any) -> Iterator[Any]:
    """Every typed object under ``value``."""
    if dataclasses.is_dataclass(value):
        yield value
        for f in dataclasses.fields(value):
            yield from _nodes(getattr(value, f.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nodes(item)


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory, fresh_run: Callable[..., Any],
                honest_attention: str) -> tuple[dict[str, Any], str]:
    """One interpreter run over a right candidate and a wrong one, with --avo-stress: the
    document and the text of the file the plugin wrote."""
    root = tmp_path_factory.mktemp("project")
    (root / "pytest.ini").write_text("[pytest]\n")
    folder = root / "candidates" / "attention"
    folder.mkdir(parents=True)
    (folder / "honest.py").write_text(honest_attention)
    (folder / "wrong.py").write_text(
        honest_attention.replace(".to(q.dtype)", ".to(q.dtype) * 1.05"))
    run = fresh_run(root, "--avo-stress", "1", examples=1)
    assert run.report, run.text
    (written,) = root.glob("report-*.json")
    return run.report, written.read_text()


@pytest.mark.slow
def test_a_real_report_round_trips_to_the_same_json(
        real_report: tuple[dict[str, Any], str]) -> None:
    document, text = real_report
    report = Report.from_json(document)
    assert report.to_json() == document
    # Key for key and in the writers' order: the very text the plugin wrote.
    assert json.dumps(report.to_json(), indent=1, default=str) == text
    assert report.schema == SCHEMA and report.environment.clock == "interpreter-wall"
    # Every key of the schema is typed: nothing of a real report is left to ``extra``.
    assert [type(n).__name__ for n in _nodes(report) if n.extra] == []


@pytest.mark.slow
def test_a_real_report_reads_as_the_dicts_said(real_report: tuple[dict[str, Any], str]) -> None:
    document, _ = real_report
    report = Report.from_json(document)
    honest = report.candidates["candidates/attention/honest.py"]
    wrong = report.candidates["candidates/attention/wrong.py"]
    raw = document["candidates"]["candidates/attention/honest.py"]
    assert honest.correctness.passed and honest.correctness.examples == \
        raw["correctness"]["examples"]
    for name, bench in honest.benchmarks.items():
        assert bench.passed and bench.tflops == raw["benchmarks"][name]["tflops"]
        assert bench.stress is not None and bench.stress.runs == 1
        assert report.baselines[name].tflops == document["baselines"][name]["tflops"]
    assert honest.phases_s is not None and honest.phases_s.total == raw["phases_s"]["total"]
    assert honest.precision is not None and set(honest.precision_rms()) == set(honest.benchmarks)
    failure = wrong.correctness.failure
    assert failure is not None and failure.rule == "tolerance" and failure.case
    assert failure.review(Path("wrong.py")).startswith("wrong.py is wrong (rule: tolerance)")
    assert from_report(honest) == from_report(raw)  # an entry or its JSON: one fitness
    assert not from_report(wrong).passed


def test_the_one_entry_of_a_report() -> None:
    entry = {"task": "attention", "correctness": {"outcome": "passed"}, "benchmarks": {}}
    document = {"candidates": {"candidates/attention/a.py": entry}}
    assert Report.from_json(document).entry == CandidateResult.from_json(entry)
    assert candidate_entry(document) == CandidateResult.from_json(entry)
    assert candidate_entry(Report.from_json(document)) == candidate_entry(document)
    assert candidate_entry(None) is None and candidate_entry({}) is None
    assert Report.of(None).entry is None


HOSTILE: list[Any] = [
    None, [], "report", 3, {"candidates": None}, {"candidates": [1, 2]},
    {"candidates": {"a": 7}}, {"candidates": {"a": {"correctness": "passed"}}},
    {"environment": ["cpu"], "baselines": {"c": {"tflops": "fast", "others": 4}}},
    {"candidates": {"a": {"correctness": {"outcome": 1, "examples": "many", "failure": [1],
                                          "message": {"x": 1}},
                          "benchmarks": {"c": {"tflops": True, "outcome": None},
                                         "d": "passed"},
                          "phases_s": {"total": "long"}, "precision": {"configs": 5}}}},
    {"candidates": {"a": {"correctness": {"outcome": "failed", "failure": {
        "rule": "tolerance", "max_abs_err": 3.0, "worst_index": "everywhere",
        "case": {"B": 1}, "n_nan": "none"}}}}},
]


@pytest.mark.parametrize("document", HOSTILE)
def test_a_hostile_or_old_report_reads_without_raising(document: Any) -> None:
    report = Report.from_json(document)
    entry = report.entry
    fitness = from_report(entry)
    assert not fitness.passed
    text = report_text("attempt 1", document, "why", None)
    assert text.startswith("attempt 1:")
    if entry is not None:
        assert regression(entry, [entry], 2.0) is None
        if entry.correctness.failure is not None:
            assert "is wrong" in entry.correctness.failure.review(Path("a.py"))


def test_odd_values_read_as_none_and_missing_objects_as_empty() -> None:
    entry = CandidateResult.from_json({"correctness": {"outcome": 5, "examples": True},
                                       "benchmarks": {"c": {"tflops": "1", "rounds": 2.5}}})
    assert entry.correctness == Correctness()  # compared by field: both empty
    assert entry.benchmarks["c"] == BenchResult()
    assert CandidateResult.from_json({}).correctness == Correctness()
    assert CandidateResult.from_json({}).benchmarks == {}
    assert CandidateResult.from_json({}).precision is None


def test_unknown_keys_and_nulls_are_kept_in_their_place() -> None:
    document = {"outcome": "passed", "future_key": [1, 2], "floor_s": None, "tflops": 3}
    bench = BenchResult.from_json(document)
    assert bench.extra == {"future_key": [1, 2]}
    assert list(bench.to_json().items()) == list(document.items())
    assert bench.tflops == 3 and isinstance(bench.tflops, int)  # written back as read


def test_an_object_built_in_code_writes_its_fields_set() -> None:
    bench = dataclasses.replace(BenchResult.from_json({"outcome": "cut"}), reason="slower")
    assert bench.to_json() == {"outcome": "cut", "reason": "slower"}
    assert Failure(rule="tolerance", message="m").to_json() == {"rule": "tolerance",
                                                                "message": "m"}


def test_the_failure_review_is_the_one_the_collector_prints() -> None:
    failure = {"rule": "tolerance", "message": "too far", "case": {"B": 1, "D": 32},
               "replay": "pytest x --avo-replay '{}'", "max_abs_err": 0.5, "tolerance": 0.01,
               "lowp_err": 0.004, "rel_err": 0.2, "worst_index": {"b": 0, "h": 1},
               "worst_value": 1.5, "worst_expected": 1.0, "n_exceeding": 3, "n_total": 64,
               "n_nan": 0, "n_inf": 0, "traceback": "Traceback\n  boom\n"}
    assert format_failure(Path("c/a.py"), failure) == "\n".join([
        "a.py is wrong (rule: tolerance)",
        "  minimal failing input: B=1 D=32",
        "  max abs error 0.5 vs tolerance 0.01 (2 x 0.004, the error of a plain torch "
        "reference in the input dtype, + 1 ulp)",
        "  relative error (norm) 0.2",
        "  worst element: b=0, h=1: got 1.5, expected 1",
        "  elements over tolerance: 3/64; NaN: 0; Inf: 0",
        "  replay: pytest x --avo-replay '{}'",
        "  candidate traceback:\nTraceback\n  boom"])
    assert format_failure(Path("a.py"), {"rule": "syntax", "message": "bad"}) == \
        "a.py is wrong (rule: syntax)\n  bad"
    # Partial statistics (an older or hostile report) read as "?", never as an exception.
    assert "vs tolerance ?" in format_failure(Path("a.py"), {"max_abs_err": 1.0})
