"""Turning a candidate module into pytest items, without importing it.

``candidates/<task>/<name>.py`` becomes a :class:`CandidateFile` holding one
``correctness`` item (hypothesis over the task's whole input space, boundary
cases first) and one ``benchmark[<config>]`` item per benchmark configuration,
timed through pytest-benchmark. All of them talk to the candidate through one
:class:`~avo_harness.sandbox.Sandbox`, started on first use and closed with the file.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import random
import shlex
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import pytest

from .judge.checker import (Verdict, calibrate, check_case, check_repeatable, check_timed,
                            fault_verdict, harness_verdict)
from .judge import gpu_lock, kernel_cache
from .judge.scan import scan_file
from .options import REPLAY_FLAG, HarnessSettings, cascade_from, raw
from .judge.roofline import Roofline, measure
from .judge.sandbox import CandidateFault, HarnessFault, Sandbox, SandboxSettings
from .tasks import BenchConfig, Call, Case, Task, get_task
from .judge.timer import clock_name, time_in_process
from .live import Live
from .phases import Phases
from .tunables import declared

SETTINGS_KEY = pytest.StashKey[HarnessSettings]()
_ROOFLINE_KEY = pytest.StashKey[Roofline]()
_BASELINES_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
_PROTOCOL_KEY = pytest.StashKey[dict[str, float]]()
_STAND_IN_KEY = pytest.StashKey[Sandbox]()
_CASCADE_KEY = pytest.StashKey[Any]()
# Inputs come from here: the OS's entropy, which the candidate can neither read nor replay.
_PRIVATE = random.SystemRandom()


class CaseFailure(AssertionError):
    """One input on which the candidate is wrong; hypothesis shrinks to the smallest."""

    def __init__(self, case: Case | None, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.case = case
        self.verdict = verdict


class CandidateFile(pytest.File):
    """A candidate module: its items share one sandboxed child process."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task: Task = get_task(self.path.parent.name)
        self.settings: HarnessSettings = self.config.stash[SETTINGS_KEY]
        self.source = self.path.read_bytes()
        self.correctness_failed = False
        self.phases = Phases()
        #: What compiling ahead cost, process by process (the report shows it).
        self.compile_ahead: dict[str, Any] | None = None
        #: TFLOP/s of each configuration timed so far, and, once the cascade (``--avo-evolve``
        #: only) found the rest cannot lift the candidate to the commit bar, their entry.
        self.timed: dict[str, float] = {}
        self.cut: dict[str, str] | None = None
        progress = self.config.getoption("avo_progress")
        self.live = Live(None if progress is None else Path(progress))
        self._sandbox: Sandbox | None = None

    @property
    def device(self) -> str:
        return "cuda" if self.settings.cuda else "cpu"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source).hexdigest()

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            # The OS sandbox makes all of these read-only; the in-process line refuses too.
            root = self.config.rootpath
            protected = [self.path.parent.parent, root, root / str(raw(self.config, "store")),
                         Path(__file__).resolve().parent]
            if self.settings.report is not None:
                protected.append(self.settings.report.resolve())
            # Compiled kernels are kept for the next evaluation of these very bytes (the
            # interpreter compiles nothing).
            kept = kernel_cache.folder(root / str(raw(self.config, "store")) / "kernel-cache",
                                       self.task.name, self.sha256) if self.settings.cuda else None
            self._sandbox = Sandbox(self.path, self.task.name, SandboxSettings(
                self.settings.cuda, self.settings.timeout_s, self.settings.memory_limit_bytes,
                tuple(str(p) for p in protected)), kernel_cache=kept)
        return self._sandbox

    def counters(self) -> tuple[float, float]:
        """Seconds the candidate's sandbox spent starting children, and compiling."""
        box = self._sandbox
        return (box.start_s, box.compile_s) if box is not None else (0.0, 0.0)

    def collect(self) -> list[pytest.Item]:
        items: list[pytest.Item] = [CorrectnessItem.from_parent(self, name="correctness")]
        if self.settings.replay is None:
            for config in self.task.bench_configs(cuda=self.settings.cuda):
                items.append(BenchmarkItem.from_parent(
                    self, name=f"benchmark[{config.name}]", callobj=_timed_by_pytest_benchmark,
                    bench=config))
        self.live.update(configs_total=len(items) - 1, force=True)
        return items

    def teardown(self) -> None:
        self.live.update(phase="done", force=True)
        if self._sandbox is not None:
            self._sandbox.close()


class CorrectnessItem(pytest.Item):
    """Hypothesis over the task's inputs; fails with the minimal failing input."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file: CandidateFile = self.parent  # type: ignore[assignment]
        self.examples_run = 0
        self.details: dict[str, Any] = {}
        #: Hypothesis's seed for this item: private, and the same for the cases planned
        #: ahead (``_planned_cases``) and the search.
        self._seed = _PRIVATE.randrange(2**32)

    def runtest(self) -> None:
        file = self.file
        findings = scan_file(file.path, file.task.forbidden, [file.path.parents[2]])
        if findings:
            self._fail(None, Verdict(False, findings[0].rule, "the source "
                                     + "; ".join(str(f) for f in findings)))
        replay = file.settings.replay
        workers = compile_workers(file.settings.cuda)
        if replay is None and workers:
            # The candidate's own process starts there too, beside its siblings; if it
            # could not, starting it again below says why.
            with file.phases.measure("compile", file.counters):
                file.compile_ahead = compile_ahead(file, self._planned_cases(), workers)
        boundary = len(file.task.boundary_cases(large=file.settings.cuda))
        file.live.update(phase="correctness", cases_done=0, force=True,
                         cases_total=1 if replay is not None else boundary + file.settings.examples)
        with file.phases.measure("correctness", file.counters):
            self._start()
            if replay is not None:
                try:
                    self._check(replay)
                except CaseFailure as failure:
                    self._fail(failure.case, failure.verdict)
            else:
                self._hypothesis()
        self.details = {"outcome": "passed", "examples": self.examples_run}

    def _start(self) -> None:
        try:
            self.file.sandbox().start()
        except CandidateFault as fault:
            self._fail(None, fault_verdict(fault))
        except HarnessFault as exc:
            self._fail(None, harness_verdict(exc, "starting the sandbox"))

    def _planned_cases(self) -> list[Case]:
        """Every input shape this file's items will call the candidate on, as far as it can
        be known ahead: the boundary cases, the examples hypothesis will draw (it draws the
        same ones again under the same seed while every example passes), and the
        benchmark configurations."""
        from hypothesis import Phase, given, seed

        task, large = self.file.task, self.file.settings.cuda
        drawn: list[Case] = []
        examples = self.file.settings.examples
        if examples:
            @seed(self._seed)
            @_search_settings(examples, (Phase.generate,))
            @given(task.cases(large=large))
            def record(case: Case) -> None:
                drawn.append(case)

            record()
        benches = [b.case for b in task.bench_configs(cuda=large)]
        return task.boundary_cases(large=large) + drawn + benches

    def _hypothesis(self) -> None:
        task, large = self.file.task, self.file.settings.cuda
        examples = self.file.settings.examples
        boundary = task.boundary_cases(large=large)
        failure = self._search(boundary, examples)
        if failure is not None and failure.verdict.rule == "tolerance" and examples and \
                _unseeded(failure.case) in map(_unseeded, boundary):
            # Hypothesis does not shrink an explicit example: search once more without
            # them and report the smaller of the two wrong inputs.
            smaller = self._search([], examples, only="tolerance")
            if smaller is not None and \
                    task.bytes_moved(smaller.case) < task.bytes_moved(failure.case):
                failure = smaller
        if failure is not None:
            self._fail(failure.case, failure.verdict)

    def _search(self, explicit: list[Case], examples: int,
                only: str | None = None) -> CaseFailure | None:
        """The first failure on ``explicit``, else the shrunk failure of ``examples`` drawn
        inputs (none drawn when it is 0); None if every input passed. With ``only``,
        failures by other rules count as passes, and a failure hypothesis could not
        reproduce (reported as flaky) counts as none."""
        from hypothesis import Phase, example, given, seed

        # Drawn seeds are mixed with a private salt, so no input of a run can be known
        # in advance; the failure report carries the mixed seed, so replays are exact.
        salt = _PRIVATE.randrange(2**31)
        phases = ((Phase.explicit,) if explicit else ()) + \
            ((Phase.generate, Phase.shrink) if examples else ())

        @seed(self._seed)
        @_search_settings(examples, phases)
        @given(self.file.task.cases(large=self.file.settings.cuda))
        def correct_on(case: Case) -> None:
            try:
                self._check({**case, "seed": (case["seed"] ^ salt) & 0x7FFFFFFF})
            except CaseFailure as failure:
                if only is None or failure.verdict.rule == only:
                    raise

        for case in reversed(explicit):
            correct_on = example(case)(correct_on)
        try:
            correct_on()
        except BaseException as exc:
            failure = _find_case_failure(exc)
            if failure is None:
                raise
            return failure if only is None or failure is exc else None
        return None

    def _check(self, case: Case) -> None:
        self.examples_run += 1
        self.file.live.update(cases_done=self.examples_run)
        verdict = check_case(self.file.task, self.file.sandbox(), case, self.file.device)
        if not verdict.passed:
            raise CaseFailure(case, verdict)

    def _fail(self, case: Case | None, verdict: Verdict) -> None:
        self.file.correctness_failed = True
        failure: dict[str, Any] = {"rule": verdict.rule, "message": verdict.message}
        if case is not None:
            failure["case"] = case
            failure["replay"] = self.replay_command(case)
        failure.update({k: v for k, v in verdict.to_json().items() if k not in failure
                        and k not in ("passed",)})
        self.details = {"outcome": "failed", "examples": self.examples_run, "failure": failure}
        raise CaseFailure(case, verdict)

    def replay_command(self, case: Case) -> str:
        return (f"pytest {shlex.quote(self.nodeid)} {REPLAY_FLAG} "
                f"{shlex.quote(json.dumps(case, sort_keys=True))}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        exc = excinfo.value
        if not isinstance(exc, CaseFailure):
            return str(super().repr_failure(excinfo))
        return format_failure(self.file.path, self.details.get("failure", {}))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}::correctness"


def _search_settings(examples: int, phases: tuple[Any, ...]) -> Any:
    """The one hypothesis profile of the correctness search (and of planning its cases)."""
    from hypothesis import HealthCheck, settings

    # hypothesis needs max_examples >= 1 even when only explicit examples run.
    return settings(max_examples=max(1, examples), deadline=None, database=None,
                    report_multiple_bugs=False, suppress_health_check=list(HealthCheck),
                    phases=phases, print_blob=False)


def compile_workers(cuda: bool) -> int:
    """Processes that compile a candidate's kernels ahead, beside its own: half the cores
    (at most 8) on a GPU; none in the interpreter, which compiles nothing."""
    return min(8, max(1, (os.cpu_count() or 2) // 2)) if cuda else 0


def compile_ahead(file: CandidateFile, cases: list[Case], workers: int) -> dict[str, Any]:
    """Call the candidate once on each of ``cases``, taken from one queue by ``workers``
    sibling processes and its own, all at once, and drop what they return: the kernels
    they compile land in the candidate's one Triton cache (the processes share its scratch
    folder), so the checks that follow find them compiled. No verdict comes from here; a
    fault stops that process, and the checks meet it again. Returns what each process
    spent (the report's ``compile_ahead``)."""
    main = file.sandbox()
    boxes = [main] + [Sandbox(main.path, main.task_name, main.settings, sibling_of=main)
                      for _ in range(workers)]

    todo: queue.SimpleQueue[Case] = queue.SimpleQueue()
    for case in cases:
        todo.put(case)
    file.live.update(phase="compile", cases_done=0, cases_total=len(cases), force=True)
    done = itertools.count(1)

    def run(box: Sandbox) -> dict[str, Any]:
        began, calls, fault = time.perf_counter(), 0, None
        booted: float | None = None
        try:
            box.start()
            booted = time.perf_counter()
            while True:
                try:
                    case = todo.get_nowait()
                except queue.Empty:
                    break
                call = file.task.make_inputs({**case, "seed": _PRIVATE.randrange(2**31)},
                                             file.device)
                box.call(call, *file.task.output_like(call))
                calls += 1
                file.live.update(cases_done=next(done))
        except (CandidateFault, HarnessFault, RuntimeError, OSError, ValueError) as exc:
            fault = type(exc).__name__
        finally:
            if box is not main:
                box.close()
        booted = booted or time.perf_counter()
        spent = {"boot_s": round(booted - began, 3), "calls": calls,
                 "calls_s": round(time.perf_counter() - booted, 3),
                 "compile_s": round(box.compile_s, 3)}
        return {**spent, "fault": fault} if fault else spent

    with ThreadPoolExecutor(len(boxes)) as pool:
        spent = list(pool.map(run, boxes))
    return {"cases": len(cases), "processes": spent}


def format_failure(path: Path, failure: dict[str, Any]) -> str:
    """The review of a correctness failure, as printed under the failing item."""
    lines = [f"{path.name} is wrong (rule: {failure.get('rule')})"]
    if "case" in failure:
        case = failure["case"]
        lines.append("  minimal failing input: " + " ".join(f"{k}={v}" for k, v in case.items()))
    if "max_abs_err" in failure:
        lines += [
            f"  max abs error {failure['max_abs_err']:.4g} vs tolerance "
            f"{failure['tolerance']:.4g} (2 x {failure['lowp_err']:.4g}, the error of a plain "
            "torch reference in the input dtype, + 1 ulp)",
            f"  relative error (norm) {failure['rel_err']:.4g}",
            "  worst element: " + ", ".join(f"{k}={v}" for k, v in failure["worst_index"].items())
            + f": got {failure['worst_value']:.6g}, expected {failure['worst_expected']:.6g}",
            f"  elements over tolerance: {failure['n_exceeding']}/{failure['n_total']}; "
            f"NaN: {failure['n_nan']}; Inf: {failure['n_inf']}",
        ]
    else:
        lines.append("  " + failure.get("message", ""))
    if "replay" in failure:
        lines.append(f"  replay: {failure['replay']}")
    if failure.get("traceback"):
        lines.append("  candidate traceback:\n" + failure["traceback"].rstrip())
    return "\n".join(lines)


def _unseeded(case: Case) -> Case:
    return {k: v for k, v in case.items() if k != "seed"}


def _find_case_failure(exc: BaseException) -> CaseFailure | None:
    """Our failure, also when hypothesis wraps it (e.g. in a flakiness group)."""
    if isinstance(exc, CaseFailure):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_case_failure(inner)
        if found is not None:
            return found
    return None


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
        floor, times = None, []
        try:
            with file.phases.measure("calibration", file.counters):
                protocol_s = _protocol_s(self.config, task, self.bench, file.settings)
        except (CandidateFault, HarnessFault, RuntimeError, OSError) as exc:
            verdict = harness_verdict(exc, "measuring the protocol's cost on its stand-in")
        else:
            with file.phases.measure("timing", file.counters):
                for remeasure in (False, True):
                    # Ceilings measured while the machine was busy put the floor too high:
                    # before calling a time impossible, measure them again (keeping the
                    # higher rates) and time again.
                    floor = _roofline(self.config, cuda, remeasure).floor_s(
                        task.flops(case), task.bytes_moved(case))
                    verdict, times = check_timed(task, file.sandbox(), case, file.device,
                                                 floor_s=floor, rng=_PRIVATE,
                                                 protocol_s=protocol_s)
                    if verdict.rule != "impossible-speed":
                        break
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
            baseline = _baseline(self.config, task, self.bench, file.device)
        if baseline is not None:
            self.details["baseline"] = baseline
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
                                       runs=runs, exact=exact, rng=_PRIVATE)
        self.details["stress"] = {"runs": runs, "exact": exact}
        if not verdict.passed:
            self._fail(replace(verdict, message=f"{self.bench.name}: {verdict.message}"))

    def _fail(self, verdict: Verdict) -> NoReturn:
        self.details.update(outcome="failed", rule=verdict.rule, message=verdict.message)
        raise CaseFailure(self.bench.case, verdict)

    def _cascade(self, tflops: float) -> None:
        """After a configuration passed: cut the rest if they cannot lift the candidate to
        the commit bar (only with ``--avo-cascade``, which ``--avo-evolve`` alone passes)."""
        if _CASCADE_KEY not in self.config.stash:
            self.config.stash[_CASCADE_KEY] = cascade_from(self.config)
        cascade = self.config.stash[_CASCADE_KEY]
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


def summarize(times: list[float], flops: float) -> dict[str, Any]:
    """Timing statistics of one configuration, and its rate at the median."""
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return {"rounds": len(times), "median_s": median, "iqr_s": q3 - q1, "min_s": min(times),
            "mean_s": statistics.fmean(times), "tflops": flops / median / 1e12}


def _calibration_path(config: pytest.Config) -> Path | None:
    path = config.getoption("avo_calibration")
    return None if path is None else Path(path)


def load_calibration(config: pytest.Config, cuda: bool) -> None:
    """Start from the machine's measurements kept in ``--avo-calibration PATH`` (which
    ``--avo-evolve`` passes to its evaluations: the first measures, the others reuse, so
    every candidate of a run is held to the same floor, protocol cost and baseline).
    A file of another device, or none, or one that does not parse, is measured anew."""
    path = _calibration_path(config)
    try:
        kept = json.loads(path.read_text()) if path is not None else None
        if not isinstance(kept, dict) or kept.get("device") != _device_name(cuda):
            return
        config.stash[_ROOFLINE_KEY] = Roofline(**kept["roofline"])
        config.stash[_PROTOCOL_KEY] = {str(k): float(v) for k, v in kept["protocol_s"].items()}
        config.stash[_BASELINES_KEY] = dict(kept["baselines"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return


def save_calibration(config: pytest.Config, cuda: bool) -> None:
    """Keep what this session measured of the machine for the next evaluation."""
    from .report import write_json_atomically

    path = _calibration_path(config)
    if path is None or _ROOFLINE_KEY not in config.stash:
        return
    roof = config.stash[_ROOFLINE_KEY]
    write_json_atomically(path, {
        "device": _device_name(cuda), "roofline": {"device": roof.device,
        "matmul_flops_per_s": roof.matmul_flops_per_s, "copy_bytes_per_s": roof.copy_bytes_per_s},
        "protocol_s": config.stash.get(_PROTOCOL_KEY, {}),
        "baselines": config.stash.get(_BASELINES_KEY, {})})


def _device_name(cuda: bool) -> str:
    import torch

    return torch.cuda.get_device_name() if cuda else "cpu"


def _roofline(config: pytest.Config, cuda: bool, remeasure: bool = False) -> Roofline:
    """This machine's ceilings, measured by the parent once per session (or kept from an
    earlier one, ``load_calibration``), and again on request (the higher rates are kept)."""
    if _ROOFLINE_KEY not in config.stash:
        config.stash[_ROOFLINE_KEY] = measure(cuda)
    elif remeasure:
        config.stash[_ROOFLINE_KEY] = config.stash[_ROOFLINE_KEY].best_of(measure(cuda))
    return config.stash[_ROOFLINE_KEY]


def _protocol_s(config: pytest.Config, task: Task, bench: BenchConfig,
                settings: HarnessSettings) -> float:
    """What a round of ``bench`` costs beside the call (``checker.calibrate``), measured once
    per session on the harness's own stand-in child; nothing on a CPU, whose figure is the
    parent's clock itself."""
    if not settings.cuda:
        return 0.0
    gaps = config.stash.setdefault(_PROTOCOL_KEY, {})
    if bench.name not in gaps:
        if _STAND_IN_KEY not in config.stash:
            box = Sandbox(None, task.name, SandboxSettings(True, settings.timeout_s, 0))
            config.stash[_STAND_IN_KEY] = box
            config.add_cleanup(box.close)
        gaps[bench.name] = calibrate(task, config.stash[_STAND_IN_KEY], bench.case, "cuda",
                                     _PRIVATE)
    return gaps[bench.name]


def _baseline(config: pytest.Config, task: Task, bench: BenchConfig,
              device: str) -> dict[str, Any] | None:
    """The task's library implementation timed on ``bench`` by the same clock, once per session.

    It runs here in the parent: it is trusted code, and the tripwires of the
    candidate's process would refuse it there.
    """
    baselines = config.stash.setdefault(_BASELINES_KEY, {})
    if bench.name not in baselines:
        if task.baseline_name is None:
            return None
        cuda = device == "cuda"
        call = task.make_inputs({**bench.case, "seed": _PRIVATE.randrange(2**31)}, device)

        def timed(run: Any) -> dict[str, Any]:
            times = time_in_process(lambda args: run(Call(args, call.kwargs)), call.args,
                                    cuda=cuda)
            return summarize(times, task.flops(bench.case))

        entry = {"name": task.baseline_name, "clock": clock_name(cuda), **timed(task.baseline)}
        # The other libraries, on the same inputs and clock: each one timed, or why not.
        others: dict[str, dict[str, Any]] = {}
        for name, run in task.extra_baselines(bench.case, device).items():
            try:
                others[name] = {"absent": run} if isinstance(run, str) else timed(run)
            except Exception as exc:  # a library's failure is no candidate's: say it, go on
                others[name] = {"absent": f"failed here ({type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"}
        if others:
            entry["others"] = others
            entry["best_tflops"] = max([entry["tflops"], *(o["tflops"] for o in others.values()
                                                           if "tflops" in o)])
        baselines[bench.name] = entry
    return baselines[bench.name]
