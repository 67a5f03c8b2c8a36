"""run_rounds in this process on the CPU: how many rounds run, what each sees, what is kept."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from avo_harness.judge.timer import INTERPRETER_PLAN, Rounds, TimingPlan, clock_name, run_rounds

# Warms up for as long as it may (half the schedule), then times every round left.
GREEDY = TimingPlan(warmup_s=float("inf"), min_warmup=1000, min_rounds=1000, max_rounds=1000,
                    target_s=0.0)
# No warm-up: every round is timed, so every round's output can be checked.
EVERY_ROUND = TimingPlan(warmup_s=0.0, min_warmup=0, min_rounds=1000, max_rounds=1000,
                         target_s=0.0)


def _counting(calls: list[int]) -> Callable[..., torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(calls))
        return x + 1

    return fn


def _rounds(length: int, keep: frozenset[int] = frozenset()) -> Rounds:
    sets = [(torch.full((4,), float(i)),) for i in range(3)]
    return Rounds(sets, {}, [(i % 3, 1.0) for i in range(length)], None, keep)


@pytest.mark.parametrize("length", range(1, 8))
def test_warm_up_takes_at_most_half_the_schedule_and_the_rest_is_timed(length: int) -> None:
    calls: list[int] = []
    run = run_rounds(_counting(calls), _rounds(length), cuda=False, plan=GREEDY)
    assert len(run.times) == length - length // 2
    assert run.executed == len(calls) == length


@pytest.mark.parametrize("length, warmup, timed", [(1, 0, 1), (2, 1, 1), (3, 1, 2), (4, 1, 3),
                                                   (14, 1, 3), (42, 1, 3)])
def test_the_interpreter_plan_warms_up_once_and_times_three_rounds_where_it_can(
        length: int, warmup: int, timed: int) -> None:
    calls: list[int] = []
    run = run_rounds(_counting(calls), _rounds(length), cuda=False, plan=INTERPRETER_PLAN)
    assert len(run.times) == len(run.host_times) == timed
    assert run.executed == len(calls) == warmup + timed <= length


def test_kept_outputs_are_the_picked_rounds_that_ran_and_the_last_as_copies() -> None:
    buffer = torch.empty(4)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return buffer.copy_(x)  # the same tensor every round

    run = run_rounds(fn, _rounds(14, keep=frozenset({0, 2, 9})), cuda=False,
                     plan=INTERPRETER_PLAN)
    assert run.executed == 4
    assert set(run.kept) == {0, 2, 3}  # round 9 never ran; round 3 is the last timed one
    buffer.fill_(-1.0)
    for index, out in run.kept.items():
        assert torch.equal(out, torch.full((4,), float(index % 3)))


def test_an_output_that_is_not_a_tensor_is_kept_as_it_is() -> None:
    answer = ["not", "a", "tensor"]
    run = run_rounds(lambda x: answer, _rounds(2), cuda=False, plan=INTERPRETER_PLAN)
    assert run.kept == {1: answer} and run.kept[1] is answer


def test_each_round_refreshes_the_same_buffers_and_scales_the_linear_argument() -> None:
    a = [torch.randn(3, 5).t(), torch.randn(3, 5).t()]  # non-contiguous
    b = [torch.randn(5, 3), torch.randn(5, 3)]
    sets = [(a[0], b[0], 7), (a[1], b[1], 7)]
    pristine = [tuple(t.clone() for t in s[:2]) for s in sets]
    schedule = [(1, 2.0), (0, -1.0), (1, 0.5), (0, 4.0), (1, 1.0), (0, -0.25)]
    seen: list[dict[str, Any]] = []

    def fn(x: torch.Tensor, y: torch.Tensor, n: int, *, flag: str) -> torch.Tensor:
        seen.append({"x": x.clone(), "y": y.clone(), "n": n, "flag": flag,
                     "where": (x.data_ptr(), y.data_ptr()), "stride": x.stride()})
        x.add_(100.0)  # a candidate that writes to its inputs must not reach the next round
        return y

    run = run_rounds(fn, Rounds(sets, {"flag": "on"}, schedule, 1, frozenset()), cuda=False,
                     plan=EVERY_ROUND)
    assert run.executed == len(seen) == len(schedule)
    for (which, scale), got in zip(schedule, seen):
        assert torch.equal(got["x"], a[which])
        assert torch.equal(got["y"], b[which] * scale)
        assert (got["n"], got["flag"], got["stride"]) == (7, "on", a[0].stride())
    assert len({got["where"] for got in seen}) == 1
    for s, clean in zip(sets, pristine):
        assert torch.equal(s[0], clean[0]) and torch.equal(s[1], clean[1])


def test_without_a_linear_argument_the_scale_is_ignored() -> None:
    seen: list[torch.Tensor] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x

    sets = [(torch.arange(4.0),)]
    rounds = Rounds(sets, {}, [(0, 2.0), (0, -4.0), (0, 0.5)], None, frozenset())
    run_rounds(fn, rounds, cuda=False, plan=EVERY_ROUND)
    assert len(seen) == 3 and all(torch.equal(x, sets[0][0]) for x in seen)


def test_on_the_cpu_each_timed_round_has_one_host_time_equal_to_its_time() -> None:
    run = run_rounds(_counting([]), _rounds(9), cuda=False, plan=GREEDY)
    assert len(run.times) == len(run.host_times) == 5
    assert run.times == run.host_times
    assert all(t >= 0.0 for t in run.times)


@pytest.mark.parametrize("estimate_s, available, rounds", [
    (0.25, 100, 4), (1.0, 100, 2), (0.0625, 100, 8), (0.0, 100, 8), (0.25, 3, 3), (1.0, 1, 1)])
def test_the_timed_rounds_fill_the_target_within_the_plan_s_bounds(
        estimate_s: float, available: int, rounds: int) -> None:
    plan = TimingPlan(warmup_s=0.0, min_warmup=0, min_rounds=2, max_rounds=8, target_s=1.0)
    assert plan.rounds_for(estimate_s, available) == rounds


def test_the_clock_is_named_for_the_device() -> None:
    assert clock_name(True) == "cuda-events"
    assert clock_name(False) == "interpreter-wall"
