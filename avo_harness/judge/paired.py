"""Two candidates timed against each other on one device, interleaved, for the commit rule.

Noise between two evaluations (another process on the machine, another GPU, clocks
that drift) can make a candidate look faster than the best when it is not. Before a
commit the controller (``evolve/paired.py``) runs this module in a fresh process: one
sandbox per candidate, started as the collector starts one (the same settings, the
same static scan first; both warmed up at once, their kernels compiled through a compile
server on the run's cache), then round after round each benchmark configuration timed for
both with the judge's own timed check (every timed output verified: a wrong one is a
failure, never a timing), the one that goes first alternating from round to round (A, B,
then B, A), all of it holding the GPU's lock. The machine's ceilings and protocol costs
are the run's (``--calibration``, what its evaluations measured), so both sides and every
evaluation are held to the same floor. It writes what it measured as JSON; the statistic
is the controller's, which never runs candidate code.

    python -m avo_harness.judge.paired --task T --device cpu|cuda --rounds R --out OUT.json
        [--gpu-lock PATH] [--timeout S] [--memory-limit GIB] [--root DIR]
        [--compile-cache DIR] [--calibration PATH] CANDIDATE.py BEST.py

The document (``avo-harness/paired/1``): ``task``, ``device`` (the GPU's name, or cpu),
``clock``, ``sandbox``, ``rounds``, ``paths`` and ``configs``; ``timings``, one entry per
round begun, ``{"round": 1, "first": "candidate", "median_s": {CONFIG: {"candidate": S,
"best": S}}}`` (the median seconds of each side's timed check); ``failures``, each ``{"who":
candidate|best|harness, "stage": scan|warm-up|calibration|timing, "rule", "message"}`` (and
``round`` and ``config`` while timing). The first failure ends the measurement.
"""
from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ..tasks import BenchConfig, Task, get_task
from . import confine, gpu_lock
from .checker import Verdict, fault_verdict, harness_verdict
from .compile_server import CompileServer
from .machine import PRIVATE, Machine
from .sandbox import CandidateFault, HarnessFault, Sandbox, SandboxSettings, candidate_settings
from .scan import scan_file
from .timer import clock_name

FORMAT = "avo-harness/paired/1"
#: The two sides, in the order of the command line (and of odd rounds).
SIDES = ("candidate", "best")
#: What the parent's own work raises when the machine or the harness fails (as the collector).
_HARNESS_FAULTS = (HarnessFault, RuntimeError, MemoryError, OSError)


class _Failed(Exception):
    """One side failed: the measurement stops there (the commit is refused either way)."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record["message"])
        self.record = record


def _failure(who: str, stage: str, verdict: Verdict, **where: Any) -> _Failed:
    record = {"who": who, "stage": stage, **where, "rule": verdict.rule,
              "message": verdict.message}
    if verdict.traceback:
        record["traceback"] = verdict.traceback
    return _Failed(record)


def run(task: Task, candidate: Path, best: Path, rounds: int, *, cuda: bool,
        settings: SandboxSettings, gpu_lock_path: Path | None,
        compile_cache: Path | None = None, calibration: Path | None = None) -> dict[str, Any]:
    """Time ``candidate`` and ``best`` interleaved over ``rounds`` rounds of every benchmark
    configuration: the document this module writes (its format in the module's docstring).
    ``compile_cache``: the compile server's (on a GPU); ``calibration``: the machine as the
    run's evaluations measured it (measured here if absent)."""
    paths = dict(zip(SIDES, (candidate, best)))
    configs = task.bench_configs(cuda=cuda)
    doc: dict[str, Any] = {
        "format": FORMAT, "task": task.name, "device": None, "clock": clock_name(cuda),
        "sandbox": confine.detect().label, "rounds": rounds,
        "paths": {who: str(p) for who, p in paths.items()},
        "configs": [c.name for c in configs], "timings": [], "failures": []}
    # The static filter first, as the collector's correctness item runs it: nothing starts
    # for a source it refuses.
    for who, path in paths.items():
        findings = scan_file(path, task.forbidden, [path.parents[2]])
        if findings:
            doc["failures"].append(_failure(who, "scan", Verdict(
                False, findings[0].rule, "the source " + "; ".join(map(str, findings)))).record)
    if doc["failures"]:
        return doc
    server = CompileServer(compile_cache) if cuda and compile_cache is not None else None
    boxes = {who: Sandbox(path, task.name, settings, compile_server=server)
             for who, path in paths.items()}
    # Each side starts and warms up on a thread of its own, which outlives the timing: a
    # sandboxed child is killed when the thread that started it ends (--die-with-parent).
    pool = ThreadPoolExecutor(len(boxes))
    try:
        warming = [pool.submit(_warm, task, who, box, configs, "cuda" if cuda else "cpu")
                   for who, box in boxes.items()]
        # The candidate's failure is the one reported: raised as soon as it is known (the
        # best's box is closed on the way out), the best's only once the candidate warmed up.
        wait(warming, return_when=FIRST_EXCEPTION)
        for future in warming:
            future.result()
        with gpu_lock.exclusive(gpu_lock_path):
            kept = Machine.kept(calibration, cuda, settings.timeout_s)
            machine = kept[0] if kept is not None else Machine(cuda, settings.timeout_s)
            try:
                machine.calibrate(task, configs)  # what the run's calibration lacks, if any
            except (CandidateFault, *_HARNESS_FAULTS) as exc:
                raise _failure("harness", "calibration",
                               harness_verdict(exc, "measuring the machine")) from None
            doc["device"] = machine.ceilings().device
            for index in range(rounds):
                order = SIDES if index % 2 == 0 else SIDES[::-1]
                medians: dict[str, dict[str, float]] = {}
                doc["timings"].append({"round": index + 1, "first": order[0],
                                       "median_s": medians})
                for bench in configs:
                    for who in order:
                        try:
                            verdict, times, _ = machine.time(task, boxes[who], bench)
                        except _HARNESS_FAULTS as exc:
                            verdict, times = harness_verdict(exc, "measuring the machine"), []
                        if not verdict.passed:
                            raise _failure(who, "timing", verdict, round=index + 1,
                                           config=bench.name)
                        medians.setdefault(bench.name, {})[who] = statistics.median(times)
    except _Failed as failed:
        doc["failures"].append(failed.record)
    finally:
        for box in boxes.values():
            box.close()
        pool.shutdown()
    return doc


def _warm(task: Task, who: str, box: Sandbox, configs: list[BenchConfig], device: str) -> None:
    """Start the candidate and call it once on each configuration, before the GPU's lock is
    taken: its kernels compile while other evaluations time. Nothing here is judged."""
    try:
        box.start()
        for bench in configs:
            call = task.make_inputs({**bench.case, "seed": PRIVATE.randrange(2**31)}, device)
            box.call(call, *task.output_like(call))
    except CandidateFault as fault:
        raise _failure(who, "warm-up", fault_verdict(fault)) from None
    except _HARNESS_FAULTS as exc:
        raise _failure(who, "warm-up", harness_verdict(exc, "warming the candidate up")) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avo_harness.judge.paired",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--device", required=True, choices=("cpu", "cuda"))
    parser.add_argument("--rounds", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--gpu-lock", type=Path)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds a candidate may take to answer one request")
    parser.add_argument("--memory-limit", type=float, default=8.0,
                        help="GiB of address space for a candidate's process (0: no limit)")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the project, protected from the candidates' writes")
    parser.add_argument("--compile-cache", type=Path,
                        help="the compile server's cache (on a GPU): the run's")
    parser.add_argument("--calibration", type=Path,
                        help="the machine as the run's evaluations measured it")
    parser.add_argument("candidate", type=Path)
    parser.add_argument("best", type=Path)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: expected an integer >= 1")
    cuda = args.device == "cuda"
    paths = [args.candidate.resolve(), args.best.resolve()]
    settings = candidate_settings(paths, cuda=cuda, timeout_s=args.timeout,
                                  memory_limit_bytes=int(args.memory_limit * 2**30),
                                  protected=[p.resolve() for p in (
                                      args.root, args.out, args.calibration,
                                      args.compile_cache) if p is not None])
    doc = run(get_task(args.task), *paths, args.rounds, cuda=cuda, settings=settings,
              gpu_lock_path=args.gpu_lock, compile_cache=args.compile_cache,
              calibration=args.calibration)
    args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
