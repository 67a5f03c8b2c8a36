"""The parent's schedule and refresh on the CPU: how many rounds run, what each sees."""
from __future__ import annotations

import pytest
import torch

from avo_harness.judge.timer import (INTERPRETER_PLAN, Refresher, TimingPlan, clock_name,
                                     run_schedule, time_in_process)

# Warms up for as long as it may (half the schedule), then times every round left.
GREEDY = TimingPlan(warmup_s=float("inf"), min_warmup=1000, min_rounds=1000, max_rounds=1000,
                    precision=0.0)


def _run(length: int, plan: TimingPlan) -> tuple[list[int], list[tuple[int, bool]]]:
    rounds: list[tuple[int, bool]] = []

    def one_round(index: int, timed: bool) -> float:
        rounds.append((index, timed))
        return 0.01

    return run_schedule(length, plan, one_round), rounds


@pytest.mark.parametrize("length", range(1, 8))
def test_warm_up_takes_at_most_half_the_schedule_and_the_rest_is_timed(length: int) -> None:
    timed, rounds = _run(length, GREEDY)
    assert len(timed) == length - length // 2
    assert [i for i, _ in rounds] == list(range(length))
    assert [i for i, t in rounds if t] == timed


@pytest.mark.parametrize("length, warmup, timed", [(1, 0, 1), (2, 1, 1), (3, 1, 2), (4, 1, 3),
                                                   (14, 1, 3), (42, 1, 3)])
def test_the_interpreter_plan_warms_up_once_and_times_three_rounds_where_it_can(
        length: int, warmup: int, timed: int) -> None:
    indices, rounds = _run(length, INTERPRETER_PLAN)
    assert len(indices) == timed
    assert len(rounds) == warmup + timed <= length


def test_the_refresh_writes_every_round_s_set_into_the_same_buffers() -> None:
    a = [torch.randn(3, 5).t(), torch.randn(3, 5).t()]  # non-contiguous
    b = [torch.randn(5, 3), torch.randn(5, 3)]
    live = (torch.empty_strided((5, 3), a[0].stride()), torch.empty(5, 3), 7)
    where = (live[0].data_ptr(), live[1].data_ptr())
    refresh = Refresher(False)
    for which in (1, 0, 1, 0):
        live[0].add_(100.0)  # what a candidate wrote must not reach the next round
        refresh(live, (a[which], b[which], 7))
        assert torch.equal(live[0], a[which]) and torch.equal(live[1], b[which])
        assert (live[0].data_ptr(), live[1].data_ptr()) == where


def test_trusted_code_is_timed_on_fresh_copies_by_the_same_schedule() -> None:
    source = torch.arange(6.0)
    seen: list[torch.Tensor] = []

    def run(args: tuple[torch.Tensor, ...]) -> None:
        seen.append(args[0].clone())
        args[0].mul_(0)  # a baseline that writes its input does not change the next round

    times = time_in_process(run, (source,), cuda=False, length=10)
    assert len(times) == 3 and all(t >= 0 for t in times)  # the interpreter plan
    assert len(seen) == 4 and all(torch.equal(x, torch.arange(6.0)) for x in seen)
    assert torch.equal(source, torch.arange(6.0))


def _timed_rounds(plan: TimingPlan, seconds: list[float], length: int = 100) -> int:
    return len(run_schedule(length, plan, lambda i, timed: seconds[i % len(seconds)]))


PLAN = TimingPlan(warmup_s=0.0, min_warmup=1, min_rounds=10, max_rounds=30, precision=0.015)


def test_a_quiet_kernel_is_timed_for_the_minimum_of_rounds() -> None:
    assert _timed_rounds(PLAN, [1.0e-3, 1.01e-3, 0.99e-3, 1.0e-3]) == 10


def test_a_noisy_kernel_is_timed_until_its_median_is_known_or_the_maximum() -> None:
    noisy = _timed_rounds(PLAN, [1.0e-3, 1.05e-3, 0.95e-3, 1.02e-3, 0.98e-3])
    assert 10 < noisy < 30
    assert _timed_rounds(PLAN, [1.0e-3, 2.0e-3, 0.5e-3]) == 30
    assert _timed_rounds(PLAN, [1.0e-3, 2.0e-3, 0.5e-3], length=12) == 11  # all there is


def test_a_plan_settles_on_the_median_s_confidence_interval() -> None:
    assert not PLAN.settled([1.0] * 9)
    assert PLAN.settled([1.0] * 10)
    wide = [1.0, 1.1] * 10
    assert not PLAN.settled(wide) and PLAN.settled(wide + [1.0] * 10)


def test_the_clock_is_named_for_the_device() -> None:
    assert clock_name(True) == "cuda-events"
    assert clock_name(False) == "interpreter-wall"
