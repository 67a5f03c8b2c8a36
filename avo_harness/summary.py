"""The terminal summary: one line per candidate file after a run.

    candidates/attention/seed.py: passed; geomean 412.3 TFLOP/s; 0.81x torch-sdpa; 1.00x seed
        31.0 s: start 3.1, compile 12.0, correctness 4.2, timing 9.8, calibration 1.9

The verdict and the geomean are the fitness the search would read (``evolve.fitness``);
the speedups compare with the task's library baseline and with ``candidates/<task>/seed.py``,
each timed in the same session ("-" where it was not). The second line is where the file's
seconds went (``phases``). Interpreter rates are labelled as
such: they time Python emulating a kernel, not a GPU. ``-p no:avo-summary`` turns it off.
"""
from __future__ import annotations

import textwrap
from pathlib import PurePosixPath

import pytest

from .evolve.fitness import Fitness, from_report, geomean
from .report import Results
from .judge.timer import clock_name
from .results import Baseline, CandidateResult

SEED_NAME = "seed.py"


class TerminalSummary:
    def __init__(self, cuda: bool, results: Results) -> None:
        self.cuda = cuda
        self.results = results

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        entries = {nodeid: CandidateResult.from_json(entry)
                   for nodeid, entry in self.results.candidates.items()}
        if not entries:
            return
        seeds = {entry.task: from_report(entry) for nodeid, entry in entries.items()
                 if PurePosixPath(nodeid).name == SEED_NAME}
        terminalreporter.write_sep("=", "avo-harness candidates")
        for nodeid, entry in entries.items():
            terminalreporter.write_line(f"{nodeid}: " + self.line(entry, seeds.get(entry.task)))
            if entry.phases_s is not None and entry.phases_s.to_json():
                terminalreporter.write_line("    " + entry.phases_s.describe())
        if not self.cuda:
            terminalreporter.write_line(f"(rates: {clock_name(False)}, the Triton interpreter's "
                                        "wall clock: they say nothing about GPU speed)")

    def line(self, entry: CandidateResult, seed: Fitness | None) -> str:
        fit = from_report(entry)
        if not entry.benchmarks and entry.correctness.passed:
            return "passed correctness; no benchmark timed"  # --avo-replay, -k, --benchmark-skip
        if not fit.passed:
            # The failures section above has the whole review; this line only names it.
            return f"failed ({textwrap.shorten(str(fit.reason), 100, placeholder=' ...')})"
        unit = "TFLOP/s" if self.cuda else "interpreter TFLOP/s"
        baseline = self.baseline(entry)
        vs_baseline = (f"{fit.geomean / baseline[1]:.2f}x {baseline[0]}" if baseline
                       else "- baseline")
        vs_seed = f"{fit.geomean / seed.geomean:.2f}x seed" if seed and seed.passed else "- seed"
        return f"passed; geomean {fit.geomean:.4g} {unit}; {vs_baseline}; {vs_seed}"

    def baseline(self, entry: CandidateResult) -> tuple[str, float] | None:
        """The library baseline's name and geomean over the entry's configurations."""
        found = self.results.baselines
        timed = [Baseline.from_json(found[name]) if name in found else None
                 for name in entry.benchmarks]
        if not timed or any(t is None or not t.tflops for t in timed):
            return None
        return str(timed[0].name), geomean(t.tflops for t in timed)  # type: ignore[union-attr]
