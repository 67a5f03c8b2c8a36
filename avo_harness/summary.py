"""The terminal summary: one line per candidate file after a run.

    candidates/attention/seed.py: passed; geomean 412.3 TFLOP/s; 0.81x torch-sdpa; 1.00x seed

The verdict and the geomean are the fitness the search would read (``evolve.fitness``);
the speedups compare with the task's library baseline and with ``candidates/<task>/seed.py``,
each timed in the same session ("-" where it was not). Interpreter rates are labelled as
such: they time Python emulating a kernel, not a GPU. ``-p no:avo-summary`` turns it off.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pytest

from .collector import BenchmarkItem, CorrectnessItem
from .evolve.fitness import Fitness, from_report, geomean
from .report import item_details
from .timer import clock_name

SEED_NAME = "seed.py"


@dataclass
class CandidateRun:
    """What one candidate file's items reported, in the shape of a report entry."""

    task: str
    correctness: dict[str, Any] = field(default_factory=lambda: {"outcome": "skipped"})
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fitness(self) -> Fitness:
        return from_report({"correctness": self.correctness, "benchmarks": self.benchmarks})

    def baseline(self) -> tuple[str, float] | None:
        """The library baseline's name and geomean over this file's configurations."""
        timed = [b["baseline"] for b in self.benchmarks.values() if b.get("baseline")]
        if not timed or len(timed) < len(self.benchmarks):
            return None
        return timed[0]["name"], geomean(t["tflops"] for t in timed)


class TerminalSummary:
    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.runs: dict[str, CandidateRun] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Any:
        report = yield
        details = item_details(item, report)
        if details is None:
            return report
        assert isinstance(item, (CorrectnessItem, BenchmarkItem))
        run = self.runs.setdefault(item.file.nodeid, CandidateRun(item.file.task.name))
        if isinstance(item, CorrectnessItem):
            run.correctness = details
        else:
            run.benchmarks[item.bench.name] = details
        return report

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.runs:
            return
        seeds = {run.task: run.fitness() for nodeid, run in self.runs.items()
                 if PurePosixPath(nodeid).name == SEED_NAME}
        terminalreporter.write_sep("=", "avo-harness candidates")
        for nodeid, run in self.runs.items():
            terminalreporter.write_line(f"{nodeid}: " + self.line(run, seeds.get(run.task)))
        if not self.cuda:
            terminalreporter.write_line(f"(rates: {clock_name(False)}, the Triton interpreter's "
                                        "wall clock: they say nothing about GPU speed)")

    def line(self, run: CandidateRun, seed: Fitness | None) -> str:
        fit = run.fitness()
        if not run.benchmarks and run.correctness.get("outcome") == "passed":
            return "passed correctness; no benchmark timed"  # --avo-replay, -k, --benchmark-skip
        if not fit.passed:
            # The failures section above has the whole review; this line only names it.
            return f"failed ({textwrap.shorten(str(fit.reason), 100, placeholder=' ...')})"
        unit = "TFLOP/s" if self.cuda else "interpreter TFLOP/s"
        baseline = run.baseline()
        vs_baseline = (f"{fit.geomean / baseline[1]:.2f}x {baseline[0]}" if baseline
                       else "- baseline")
        vs_seed = f"{fit.geomean / seed.geomean:.2f}x seed" if seed and seed.passed else "- seed"
        return f"passed; geomean {fit.geomean:.4g} {unit}; {vs_baseline}; {vs_seed}"
