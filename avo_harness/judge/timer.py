"""The parent's clock: rounds of calls over fresh inputs, timed from outside the child.

Every round, warm-up or timed (the child cannot tell them apart), the parent writes
the round's own private input set into the live buffers, flushes the L2 cache, and calls.
The parent's clock runs from the request sent to its own copy of the output made, so
whatever the child does for a round, however it hides it, is inside. On a GPU the
figure is the child's CUDA events around the call, accepted only where the parent's
clock accounts for it (``checker``); in the Triton interpreter the figure is the
parent's clock itself: those numbers time Python emulating the kernel, and every
report says so.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: Larger than any current GPU's L2 (50 MB on an H100, 60 MB on an H200).
_FLUSH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class TimingPlan:
    """How long to warm up, and when the timed rounds have said enough."""

    warmup_s: float
    min_warmup: int
    min_rounds: int
    max_rounds: int
    #: Timing stops once the 95% confidence interval of the median is within this share of
    #: it on either side (the notched box plot's 1.57 x IQR / sqrt(n)), or at ``max_rounds``.
    precision: float

    def settled(self, times: list[float]) -> bool:
        n = len(times)
        if n < self.min_rounds:
            return False
        if n >= self.max_rounds:
            return True
        q1, median, q3 = statistics.quantiles(times, n=4)
        return 1.57 * (q3 - q1) / math.sqrt(n) <= self.precision * median


#: Every timed round is also verified, so a round costs its float64 reference too (on an
#: H200 most of an evaluation's timing phase): a quiet kernel (IQR within 2% of the median)
#: settles in the minimum of 5 rounds, a noisy one takes up to 30.
GPU_PLAN = TimingPlan(warmup_s=0.025, min_warmup=3, min_rounds=5, max_rounds=30,
                      precision=0.015)
INTERPRETER_PLAN = TimingPlan(warmup_s=0.0, min_warmup=1, min_rounds=3, max_rounds=3,
                              precision=1.0)


def clock_name(cuda: bool) -> str:
    return "cuda-events" if cuda else "interpreter-wall"


def plan_for(cuda: bool) -> TimingPlan:
    return GPU_PLAN if cuda else INTERPRETER_PLAN


def run_schedule(length: int, plan: TimingPlan,
                 one_round: Callable[[int, bool], float]) -> list[int]:
    """Warm up, then time until ``plan`` is settled; ``one_round(index, timed)`` runs round
    ``index`` of the schedule and returns its seconds. Returns the indices of the timed
    rounds, in order."""
    # Warm-up may take at most half the schedule: the rest is for timed rounds.
    index, warm_s = 0, 0.0
    while index < length // 2 and (index < plan.min_warmup or warm_s < plan.warmup_s):
        took = one_round(index, False)
        if index:  # the first call compiles: it says nothing of the speed
            warm_s += took
        index += 1
    timed: list[int] = []
    times: list[float] = []
    while index < length and not plan.settled(times):
        times.append(one_round(index, True))
        timed.append(index)
        index += 1
    return timed


class Refresher:
    """Writes a round's inputs into the live buffers and flushes the L2 cache."""

    def __init__(self, cuda: bool) -> None:
        self._flush = torch.empty(_FLUSH_BYTES, dtype=torch.int8, device="cuda") if cuda \
            else None

    def __call__(self, live: tuple[Any, ...], values: tuple[Any, ...]) -> None:
        for dst, src in zip(live, values):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        if self._flush is not None:
            self._flush.zero_()
            torch.cuda.synchronize()


def summarize(times: list[float], flops: float) -> dict[str, Any]:
    """Timing statistics of one configuration's rounds, and its rate at the median."""
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return {"rounds": len(times), "median_s": median, "iqr_s": q3 - q1, "min_s": min(times),
            "mean_s": statistics.fmean(times), "tflops": flops / median / 1e12}


def time_in_process(run: Callable[[tuple[Any, ...]], Any], args: tuple[Any, ...], *,
                    cuda: bool, length: int = 64) -> list[float]:
    """Seconds per timed round of trusted code (a library baseline) run in this process, by
    the same schedule, refresh and clock as a candidate's rounds."""
    import time

    live = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    refresh = Refresher(cuda)
    times: list[float] = []

    def one_round(index: int, timed: bool) -> float:
        refresh(live, args)
        start = time.perf_counter()
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        run(live)
        if cuda:
            end.record()
            torch.cuda.synchronize()
        host = time.perf_counter() - start
        took = begin.elapsed_time(end) / 1e3 if cuda else host
        if timed:
            times.append(took)
        return took

    run_schedule(length, plan_for(cuda), one_round)
    return times
