"""The machine-readable report (``--avo-report PATH``): the fitness the loop reads.

Schema ``avo-harness/report/1`` (documented in docs/reference.md)::

    {"schema": "avo-harness/report/1", "created": ISO-8601,
     "environment": {"device", "clock", "sandbox", "sandbox_missing", ...},
     "candidates": {"<nodeid of the file>": {
         "task": str, "path": str, "sha256": str,
         "phases_s": {"start", "compile", "correctness", "timing", "calibration", "total"},
         "correctness": {"outcome": "passed|failed|error|skipped", "examples": int,
                         "failure": {"rule", "message", "case", "replay", "max_abs_err",
                                     "rel_err", "rms_err", "tolerance", "lowp_err",
                                     "worst_index", "worst_value", "worst_expected",
                                     "n_exceeding", "n_total", "n_nan", "n_inf", "traceback"}},
         "benchmarks": {"<config>": {"outcome", "params", "clock", "floor_s", "rounds",
                                     "median_s", "iqr_s", "min_s", "mean_s", "tflops",
                                     "wall_gap_s", "protocol_s", "stress", "rule", "message"}},
         "precision": {"configs": {"<config>": {"max", "rms", "elements"}},
                       "overall": {"max", "rms", "elements"}}}},
     "baselines": {"<config>": {"name", "clock", "rounds", "median_s", "iqr_s", "min_s",
                                "mean_s", "tflops", "best_tflops",
                                "others": {"<library>": {"rounds", ..., "tflops"} | {"absent"}}}}}

A correctness failure also carries ``error_map`` (see ``checker.error_map``): the
absolute error over the last two output dimensions where the worst element is.
``baselines`` holds the task's library implementation timed by the same clock in
the same run (for attention, torch SDPA); ``others`` the task's other libraries on the same
inputs and clock (for attention, FlashAttention-4 where it imports and applies, else the
one line why not), and ``best_tflops`` the fastest of them all. ``phases_s``: seconds per
phase of the candidate's items (``phases.py`` says what each holds). ``wall_gap_s`` (GPU): the
median seconds the parent's clock ran beyond the device time of a round; ``protocol_s``: the
same for the harness's own stand-in (what the protocol costs), against which the first is
judged.
``stress`` (``--avo-stress``): ``{"runs", "exact"}``, the runs on identical inputs and whether
they were compared bit for bit. ``precision`` (``checker.precision``): of each configuration
that passed, and of all of them, the error over the tolerance of the verified timed outputs.

The file is replaced atomically, so a reader never sees half a report. Readers read it
through ``results.py`` (``Report.from_json``), which types this schema.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from .collector import BenchmarkItem, CandidateFile, CorrectnessItem
from .judge.checker import merge_precision
from .judge.timer import clock_name
from .options import HarnessSettings
from .results import ENTRY, SCHEMA

__all__ = ["SCHEMA", "JSONReport", "Results", "environment", "item_details",
           "write_json_atomically"]


def environment(cuda: bool) -> dict[str, Any]:
    """Where the numbers come from; timings are only comparable within one environment."""
    import torch

    from .judge.confine import detect

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu (Triton interpreter)",
        "cuda": cuda,
        "interpreter": not cuda,
        "clock": clock_name(cuda),
        "torch": torch.__version__,
        "triton": version("triton"),
        "cuda_runtime": torch.version.cuda,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        # How the candidates' processes were confined, and why a layer was missing.
        "sandbox": detect().label,
        "sandbox_missing": detect().reason,
    }


def item_details(item: pytest.Item, report: pytest.TestReport) -> dict[str, Any] | None:
    """A candidate item's outcome as a report entry holds it; None for other items and for
    setup or teardown phases that passed (the call phase says what happened)."""
    if not isinstance(item, (CorrectnessItem, BenchmarkItem)):
        return None
    if report.when != "call" and report.passed:
        return None
    details = dict(item.details)
    if report.failed and details.get("outcome") != "failed":
        # Raised outside the checks (a harness or environment error), not a verdict.
        details = {"outcome": "error", "message": report.longreprtext.splitlines()[-1:]}
    elif report.skipped:
        details.setdefault("outcome", "skipped")
        details.setdefault("reason", str(report.longrepr[-1]) if isinstance(
            report.longrepr, tuple) else "skipped")
    return details



class Results:
    """Every candidate item's outcome in this session, gathered into report entries.

    The one place that does so: the JSON report writes them, the terminal summary
    prints them. The process that runs the items builds them (``makereport``); an xdist
    controller, which runs none, takes them from the reports its workers send
    (``merge``).
    """

    def __init__(self) -> None:
        self.candidates: dict[str, dict[str, Any]] = {}
        self.baselines: dict[str, dict[str, Any]] = {}

    def merge(self, report: pytest.TestReport) -> None:
        """Take a worker's entry from ``report`` (its latest state of that candidate)."""
        carried = getattr(report, ENTRY, None)
        if isinstance(carried, dict):
            self.candidates[carried["nodeid"]] = carried["entry"]
            self.baselines.update(carried["baselines"])

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Any:
        report = yield
        details = item_details(item, report)
        if details is None:
            return report
        assert isinstance(item, (CorrectnessItem, BenchmarkItem))
        entry = self._entry(item.file)
        entry["phases_s"] = item.file.phases.to_json()
        if item.file.compile_ahead is not None:
            entry["compile_ahead"] = item.file.compile_ahead
        if isinstance(item, CorrectnessItem):
            entry["correctness"] = details
        else:
            baseline = details.pop("baseline", None)
            if baseline is not None:
                self.baselines[item.bench.name] = baseline
            precision = details.pop("precision", None)
            if precision is not None:
                configs = entry.setdefault("precision", {"configs": {}})["configs"]
                configs[item.bench.name] = precision
                entry["precision"]["overall"] = merge_precision(list(configs.values()))
            entry["benchmarks"][item.bench.name] = details
        # Plain JSON values only: xdist's channel carries nothing else.
        setattr(report, ENTRY, json.loads(json.dumps(
            {"nodeid": item.file.nodeid, "entry": entry, "baselines": self.baselines},
            default=str)))
        return report

    def _entry(self, file: CandidateFile) -> dict[str, Any]:
        return self.candidates.setdefault(file.nodeid, {
            "task": file.task.name, "path": str(file.path), "sha256": file.sha256,
            "correctness": {"outcome": "skipped"}, "benchmarks": {}})


class JSONReport:
    """Writes the session's results at its end (registered with ``--avo-report`` only)."""

    def __init__(self, path: Path, settings: HarnessSettings, results: Results) -> None:
        self.path = path
        self.settings = settings
        self.results = results

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        document = {
            "schema": SCHEMA,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "environment": environment(self.settings.cuda),
            "candidates": self.results.candidates,
            "baselines": self.results.baselines,
        }
        write_json_atomically(self.path, document)


def write_json_atomically(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=1, default=str)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)  # the previous report, if any, stays whole
        raise
