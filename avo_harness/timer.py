"""Timing one candidate call, in the candidate's process.

On a GPU the clock is CUDA events around each call, with the L2 cache flushed
before every round and compilation and warm-up outside the timed rounds. In the
Triton interpreter the clock is the host's: those numbers time Python emulating
the kernel, and every report labels them so.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: Larger than any current GPU's L2 (50 MB on an H100, 60 MB on an H200).
_FLUSH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class TimingPlan:
    """How long to warm up and how many rounds to time."""

    warmup_s: float
    min_rounds: int
    max_rounds: int
    target_s: float

    def rounds_for(self, estimate_s: float) -> int:
        wanted = int(self.target_s / max(estimate_s, 1e-9))
        return max(self.min_rounds, min(self.max_rounds, wanted))


GPU_PLAN = TimingPlan(warmup_s=0.025, min_rounds=10, max_rounds=100, target_s=0.3)
INTERPRETER_PLAN = TimingPlan(warmup_s=0.0, min_rounds=3, max_rounds=3, target_s=0.0)


def clock_name(cuda: bool) -> str:
    return "cuda-events" if cuda else "interpreter-wall"


def time_calls(fn: Callable[[], Any], *, cuda: bool, plan: TimingPlan) -> tuple[list[float], Any]:
    """Per-round seconds of ``fn()`` and its last output."""
    out = fn()  # compiles; never timed
    if cuda:
        return _time_cuda(fn, plan, out)
    times = []
    for _ in range(plan.rounds_for(0.0)):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def _time_cuda(fn: Callable[[], Any], plan: TimingPlan, out: Any) -> tuple[list[float], Any]:
    flush = torch.empty(_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < plan.warmup_s:
        out = fn()
        torch.cuda.synchronize()
        calls += 1
    estimate = (time.perf_counter() - start) / calls
    rounds = plan.rounds_for(estimate)
    begin = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    for i in range(rounds):
        flush.zero_()
        begin[i].record()
        out = fn()
        end[i].record()
    torch.cuda.synchronize()
    return [b.elapsed_time(e) / 1e3 for b, e in zip(begin, end)], out
