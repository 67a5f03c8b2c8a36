"""Timing a candidate's calls, in the candidate's process, so that no cache or trick helps.

Every round, timed or warm-up (the candidate cannot tell them apart), first
refreshes the live input buffers in place from the round's private input set and,
where sets repeat, scales the argument the output is linear in by a power of two (so
every round sees new data at the same addresses), then flushes the L2 cache, then calls. On a
GPU the clock is CUDA events around the call, and each round also synchronizes the
device and reads the host clock, so work escaping the events (another stream, a
thread) shows as a gap between the two. In the Triton interpreter the clock is the
host's: those numbers time Python emulating the kernel, and every report says so.
The outputs of rounds chosen by the parent are cloned right after the round and
sent back for verification.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

#: Larger than any current GPU's L2 (50 MB on an H100, 60 MB on an H200).
_FLUSH_BYTES = 256 * 1024 * 1024
# Bound before any candidate code runs, so that replacing the module attributes later
# cannot reach the clock (the worker also checks that nothing was replaced).
_perf_counter = time.perf_counter


@dataclass(frozen=True)
class TimingPlan:
    """How long to warm up and how many rounds to time."""

    warmup_s: float
    min_warmup: int
    min_rounds: int
    max_rounds: int
    target_s: float

    def rounds_for(self, estimate_s: float, available: int) -> int:
        wanted = int(self.target_s / max(estimate_s, 1e-9))
        return max(1, min(available, max(self.min_rounds, min(self.max_rounds, wanted))))


GPU_PLAN = TimingPlan(warmup_s=0.025, min_warmup=3, min_rounds=10, max_rounds=60, target_s=0.3)
INTERPRETER_PLAN = TimingPlan(warmup_s=0.0, min_warmup=1, min_rounds=3, max_rounds=3,
                              target_s=0.0)


@dataclass(frozen=True)
class Rounds:
    """What the parent asks for: the input sets, each round's set and scale, what to keep."""

    sets: list[tuple[Any, ...]]
    kwargs: dict[str, Any]
    schedule: list[tuple[int, float]]
    linear_arg: int | None
    keep: frozenset[int]


@dataclass
class TimedRun:
    """Per-round seconds of the timed rounds, and the kept outputs by schedule index."""

    times: list[float] = field(default_factory=list)
    host_times: list[float] = field(default_factory=list)
    kept: dict[int, Any] = field(default_factory=dict)
    executed: int = 0


def clock_name(cuda: bool) -> str:
    return "cuda-events" if cuda else "interpreter-wall"


def run_rounds(fn: Callable[..., Any], rounds: Rounds, *, cuda: bool,
               plan: TimingPlan) -> TimedRun:
    """Warm up, then time ``fn`` over fresh inputs each round (see the module docstring)."""
    live = [_like(a) for a in rounds.sets[0]]
    flush = torch.empty(_FLUSH_BYTES, dtype=torch.int8, device="cuda") if cuda else None
    run = TimedRun()

    def one_round(index: int, timed: bool, last: bool = False) -> float:
        which, scale = rounds.schedule[index]
        for dst, src in zip(live, rounds.sets[which]):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        if rounds.linear_arg is not None and scale != 1.0:
            live[rounds.linear_arg].mul_(scale)
        if flush is not None:
            flush.zero_()
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start = _perf_counter()
        if flush is not None:
            begin.record()
        out = fn(*live, **rounds.kwargs)
        if flush is not None:
            end.record()
            torch.cuda.synchronize()
        host = _perf_counter() - start
        if index in rounds.keep or last:
            run.kept[index] = _snapshot(out)
        run.executed = index + 1
        if timed:
            run.times.append(begin.elapsed_time(end) / 1e3 if flush is not None else host)
            run.host_times.append(host)
        return host

    # Warm-up may take at most half the schedule: the rest is for timed rounds.
    index, warm_s = 0, 0.0
    while index < len(rounds.schedule) // 2 and (
            index < plan.min_warmup or warm_s < plan.warmup_s):
        took = one_round(index, timed=False)
        if index:  # the first call compiles: it says nothing of the speed
            warm_s += took
        index += 1
    available = len(rounds.schedule) - index
    estimate = warm_s / max(1, index - 1)
    end = index + plan.rounds_for(estimate, available)
    while index < end:
        # The last round's output is always verified, besides the parent's secret picks.
        one_round(index, timed=True, last=index == end - 1)
        index += 1
    return run


def _like(value: Any) -> Any:
    """A buffer with ``value``'s shape and strides (non-contiguous layouts stay so)."""
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.size(), value.stride(), dtype=value.dtype,
                                   device=value.device)
    return value


def _snapshot(out: Any) -> Any:
    """A copy of a plain tensor output as it is now; anything else as it is."""
    return out.detach().clone() if type(out) is torch.Tensor else out
