"""The benchmark items: one a configuration, timed by the judge, reported by pytest-benchmark.

The judge's clock measures each round; a replay clock (``_ReplayClock``) hands those
device-measured seconds to pytest-benchmark, so its statistics are the true ones. Every
timed output is verified; ``--avo-stress`` calls again on identical inputs; with
``--avo-cascade`` the configurations left are cut once they cannot lift the candidate to
the commit bar.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from ..judge import gpu_lock
from ..judge.checker import Verdict, check_repeatable, harness_verdict
from ..judge.machine import PRIVATE
from ..judge.sandbox import CandidateFault, HarnessFault
from ..judge.timer import clock_name, summarize
from ..options import cascade_from
from ..tasks import BenchConfig
from ..tunables import declared
from .calibration import baseline, catch_up, machine_of, save_calibration
from .correctness import CaseFailure
from .keys import CASCADE_KEY

if TYPE_CHECKING:
    from .candidate import CandidateFile


class _ReplayClock:
    """A clock for pytest-benchmark that advances by device-measured seconds.

    pytest-benchmark reads ``timer()`` before and after each round of the target;
    the target advances this clock by one measured round, so its statistics are
    those of the true device times, not of the pipe to the child.
    """

    def __init__(self, name: str) -> None:
        self.__name__ = name
        self.__module__ = "avo_harness"
        self._times: list[float] = []
        self._now = 0.0

    def load(self, times: list[float]) -> None:
        self._times = list(times)

    def __call__(self) -> float:
        return self._now

    def advance(self) -> None:
        self._now += self._times.pop(0)


def _timed_by_pytest_benchmark(request: pytest.FixtureRequest, benchmark: Any) -> None:
    """The body of every benchmark item (the item itself does the work)."""
    request.node.measure(benchmark)


class BenchmarkItem(pytest.Function):
    """One benchmark configuration: time the candidate, verify what it returned (and, with
    ``--avo-stress``, that it returns it again on the same inputs)."""

    def __init__(self, *, bench: BenchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file: CandidateFile = self.parent  # type: ignore[assignment]
        self.bench = bench
        self.clock = _ReplayClock(clock_name(self.file.settings.cuda).replace("-", "_"))
        self.add_marker(pytest.mark.benchmark(timer=self.clock, group=bench.name))
        self.details: dict[str, Any] = {}

    @classmethod
    def for_config(cls, file: CandidateFile, bench: BenchConfig) -> BenchmarkItem:
        """The item timing ``bench``, its body the pytest-benchmark fixture's user."""
        return cls.from_parent(file, name=f"benchmark[{bench.name}]",
                               callobj=_timed_by_pytest_benchmark, bench=bench)

    def measure(self, benchmark: Any) -> None:
        file, task = self.file, self.file.task
        cuda = file.settings.cuda
        if file.correctness_failed:
            self.details = {"outcome": "skipped", "reason": "correctness failed"}
            pytest.skip("not timed: the candidate failed correctness")
        if file.cut is not None:
            self.details = dict(file.cut)
            pytest.skip(file.cut["reason"])
        names = [c.name for c in task.bench_configs(cuda=cuda)]
        file.live.update(phase="timing", configs_done=names.index(self.bench.name), force=True)
        with gpu_lock.exclusive(self.config.getoption("avo_gpu_lock")):
            self._measure_alone(benchmark)

    def _measure_alone(self, benchmark: Any) -> None:
        """``measure`` with the GPU to itself: the machine's ceilings, the protocol's cost,
        the timed rounds and the baseline."""
        file, task = self.file, self.file.task
        cuda = file.settings.cuda
        case = self.bench.case
        floor: float | None = None
        times: list[float] = []
        machine = machine_of(self.config)
        uncalibrated = False
        try:
            with file.phases.measure("calibration", file.counters):
                uncalibrated = catch_up(self.config, cuda, self.bench)
                protocol_s = machine.protocol_s(task, self.bench)
        except (CandidateFault, HarnessFault, RuntimeError, OSError) as exc:
            verdict = harness_verdict(exc, "measuring the protocol's cost on its stand-in")
        else:
            with file.phases.measure("timing", file.counters):
                verdict, times, floor = machine.time(task, file.sandbox(), self.bench)
        summary = summarize(times, task.flops(case)) if times else {}
        self.details = {"params": case, "clock": clock_name(cuda), "floor_s": floor, **summary}
        if verdict.wall_gap_s is not None:
            self.details.update(wall_gap_s=verdict.wall_gap_s, protocol_s=protocol_s)
        if not verdict.passed:
            self._fail(verdict)
        if file.settings.stress:
            self._stress(file.settings.stress)
        self.details["outcome"] = "passed"
        if verdict.precision is not None:
            self.details["precision"] = verdict.precision
        with file.phases.measure("calibration", file.counters):
            library = baseline(self.config, task, self.bench, file.device)
            if uncalibrated:  # for the evaluations running beside this one
                save_calibration(self.config, cuda)
        if library is not None:
            self.details["baseline"] = library
        benchmark.extra_info.update(tflops=summary["tflops"], clock=clock_name(cuda))
        self.clock.load(times)
        benchmark.pedantic(self.clock.advance, rounds=len(times), iterations=1)
        self._cascade(summary["tflops"])

    def _stress(self, runs: int) -> None:
        """``--avo-stress``: ``runs`` more calls on identical inputs must give the verified
        output again, bit for bit unless the source declares ``DETERMINISTIC = False``."""
        file = self.file
        exact = declared(file.source, "DETERMINISTIC", True) is not False
        with file.phases.measure("timing", file.counters):
            verdict = check_repeatable(file.task, file.sandbox(), self.bench.case, file.device,
                                       runs=runs, exact=exact, rng=PRIVATE)
        self.details["stress"] = {"runs": runs, "exact": exact}
        if not verdict.passed:
            self._fail(replace(verdict, message=f"{self.bench.name}: {verdict.message}"))

    def _fail(self, verdict: Verdict) -> NoReturn:
        self.details.update(outcome="failed", rule=verdict.rule, message=verdict.message)
        raise CaseFailure(self.bench.case, verdict)

    def _cascade(self, tflops: float) -> None:
        """After a configuration passed: cut the rest if they cannot lift the candidate to
        the commit bar (only with ``--avo-cascade``, which ``--avo-evolve`` alone passes)."""
        if CASCADE_KEY not in self.config.stash:
            self.config.stash[CASCADE_KEY] = cascade_from(self.config)
        cascade = self.config.stash[CASCADE_KEY]
        file = self.file
        file.timed[self.bench.name] = tflops
        names = [c.name for c in file.task.bench_configs(cuda=file.settings.cuda)]
        remaining = names[names.index(self.bench.name) + 1:]
        if cascade is not None and remaining and cascade.cannot_reach(file.timed, remaining):
            file.cut = cascade.cut_entry(file.timed, remaining)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        exc = excinfo.value
        if isinstance(exc, CaseFailure):
            what = "the output changed on identical inputs" if \
                exc.verdict.rule == "nondeterministic" else "the timed call's output is wrong"
            return (f"{self.name}: {what} (rule: {exc.verdict.rule})\n"
                    f"  {exc.verdict.message}"
                    + (f"\n  candidate traceback:\n{exc.verdict.traceback}"
                       if exc.verdict.traceback else ""))
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}::{self.name}"
