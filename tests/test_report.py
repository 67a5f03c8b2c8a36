"""The JSON report: its schema, filled from a real run, and how it is written."""
from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avo_harness.report import SCHEMA, write_json_atomically
from avo_harness.tasks import get_task

ENVIRONMENT = {"device", "cuda", "interpreter", "clock", "torch", "triton", "cuda_runtime",
               "python", "platform"}
FAILURE = {"rule", "message", "case", "replay", "max_abs_err", "rel_err", "rms_err",
           "tolerance", "lowp_err", "worst_index", "worst_value", "worst_expected",
           "n_exceeding", "n_total", "n_nan", "n_inf"}
TIMING = {"outcome", "params", "clock", "rounds", "median_s", "iqr_s", "min_s", "mean_s",
          "tflops"}


@pytest.fixture(scope="module")
def report(make_project: Callable[..., Path], fresh_run: Callable[..., Any],
           honest_attention: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """The report of one run over an honest candidate and a wrong one."""
    wrong = honest_attention.replace("torch.softmax(s, -1)", "torch.softmax(s * 0.5, -1)")
    root = make_project({"honest": honest_attention, "wrong": wrong})
    run = fresh_run(root, examples=1)
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.text
    paths = {name: root / "candidates" / "attention" / f"{name}.py" for name in ("honest", "wrong")}
    return run.report, paths


@pytest.mark.slow
def test_the_report_describes_the_run_and_where_it_ran(
        report: tuple[dict[str, Any], dict[str, Path]]) -> None:
    document, paths = report
    assert document["schema"] == SCHEMA == "avo-harness/report/1"
    created = datetime.datetime.fromisoformat(document["created"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - created).total_seconds() < 600
    environment = document["environment"]
    assert ENVIRONMENT <= set(environment)
    assert environment["cuda"] is False and environment["interpreter"] is True
    assert environment["clock"] == "interpreter-wall"
    assert set(document["candidates"]) == {f"candidates/attention/{name}.py" for name in paths}
    for name, path in paths.items():
        entry = document["candidates"][f"candidates/attention/{name}.py"]
        assert entry["task"] == "attention"
        assert Path(entry["path"]) == path
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_passing_candidate_has_its_examples_and_timings(
        report: tuple[dict[str, Any], dict[str, Path]]) -> None:
    entry = report[0]["candidates"]["candidates/attention/honest.py"]
    task = get_task("attention")
    assert entry["correctness"]["outcome"] == "passed"
    assert entry["correctness"]["examples"] > len(task.boundary_cases(large=False))
    configs = task.bench_configs(cuda=False)
    assert set(entry["benchmarks"]) == {c.name for c in configs}
    for config in configs:
        timing = entry["benchmarks"][config.name]
        assert TIMING <= set(timing)
        assert timing["outcome"] == "passed" and timing["params"] == config.case
        assert timing["clock"] == "interpreter-wall" and timing["rounds"] >= 1
        assert 0 < timing["min_s"] <= timing["median_s"] and timing["iqr_s"] >= 0
        assert timing["tflops"] == pytest.approx(
            task.flops(config.case) / timing["median_s"] / 1e12)


@pytest.mark.slow
def test_a_failing_candidate_has_its_review_and_no_timings(
        report: tuple[dict[str, Any], dict[str, Path]]) -> None:
    entry = report[0]["candidates"]["candidates/attention/wrong.py"]
    correctness = entry["correctness"]
    assert correctness["outcome"] == "failed" and correctness["examples"] >= 1
    failure = correctness["failure"]
    assert FAILURE <= set(failure)
    assert failure["rule"] == "tolerance"
    assert json.dumps(failure["case"], sort_keys=True) in failure["replay"]
    assert failure["max_abs_err"] > failure["tolerance"]
    for timing in entry["benchmarks"].values():
        assert timing["outcome"] == "skipped" and "correctness" in timing["reason"]


def test_an_entry_has_the_precision_of_each_configuration_and_overall(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_rmsnorm: str) -> None:
    write_candidate("honest", honest_rmsnorm, task="rmsnorm")
    entry = avo_run(examples=0).candidate("honest", task="rmsnorm")
    precision = entry["precision"]
    configs = get_task("rmsnorm").bench_configs(cuda=False)
    assert set(precision["configs"]) == {c.name for c in configs}
    for config in configs:
        stats = precision["configs"][config.name]
        rounds = entry["benchmarks"][config.name]["rounds"]
        # Every element of every verified timed output, each within its tolerance.
        assert stats["elements"] == rounds * math.prod(config.case["shape"])
        assert 0 < stats["rms"] <= stats["max"] <= 1
    overall, parts = precision["overall"], precision["configs"].values()
    assert overall["elements"] == sum(p["elements"] for p in parts)
    assert overall["max"] == max(p["max"] for p in parts)
    assert min(p["rms"] for p in parts) <= overall["rms"] <= max(p["rms"] for p in parts)
    assert all("precision" not in b for b in entry["benchmarks"].values())  # said once


def test_the_report_folder_is_created(pytester: pytest.Pytester) -> None:
    path = pytester.path / "out" / "nested" / "report.json"
    result = pytester.runpytest("--collect-only", "--avo-device", "cpu", "--avo-report",
                                str(path))
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_a_report_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json_atomically(path, {"run": 1, "pad": "x" * 100_000})
    write_json_atomically(path, {"run": 2})
    assert json.loads(path.read_text()) == {"run": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot be written")


def test_a_report_that_cannot_be_written_leaves_the_last_one_intact(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json_atomically(path, {"run": 1})
    with pytest.raises(RuntimeError, match="cannot be written"):
        write_json_atomically(path, {"run": 2, "bad": _Unprintable()})
    assert json.loads(path.read_text()) == {"run": 1}


def test_a_report_that_cannot_be_written_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    with pytest.raises(RuntimeError):
        write_json_atomically(path, {"bad": _Unprintable()})
    assert list(tmp_path.iterdir()) == []


def test_under_xdist_the_controller_writes_every_worker_s_candidates(
        make_project: Callable[..., Path], fresh_run: Callable[..., Any],
        honest_attention: str) -> None:
    # The workers run the items; the controller, which runs none, writes the one report
    # and prints the summary from the entries their reports carry.
    root = make_project({"first": honest_attention, "second": honest_attention})
    run = fresh_run(root, "-n", "2", "--dist", "loadscope")
    assert run.ret == 0, run.text
    for name in ("first", "second"):
        entry = run.candidate(name)
        assert entry["correctness"]["outcome"] == "passed"
        benchmarks = entry["benchmarks"]
        assert benchmarks and all(b["outcome"] == "passed" and b["tflops"] > 0
                                  for b in benchmarks.values())
        assert entry["phases_s"]["total"] > 0
        assert any(line.startswith(f"candidates/attention/{name}.py: passed")
                   for line in run.lines), run.text
    assert set(run.report["baselines"]) == set(benchmarks)
