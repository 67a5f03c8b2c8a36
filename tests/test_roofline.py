"""The physical floor: the measured ceilings, the larger of two times, the best of two runs."""
from __future__ import annotations

import math

import pytest

from avo_harness.judge.roofline import Roofline, measure

# Powers of two, so every floor below is exact.
MACHINE = Roofline("machine", matmul_flops_per_s=2.0**40, copy_bytes_per_s=2.0**30)


def test_the_cpu_ceilings_are_positive_and_finite() -> None:
    roofline = measure(False)
    assert roofline.device == "cpu"
    for rate in (roofline.matmul_flops_per_s, roofline.copy_bytes_per_s):
        assert rate > 0.0 and math.isfinite(rate)


@pytest.mark.parametrize("flops, bytes_moved, floor", [
    (2.0**41, 2.0**30, 2.0),   # compute-bound: 2 s of FLOPs, 1 s of bytes
    (2.0**40, 2.0**32, 4.0),   # memory-bound: 1 s of FLOPs, 4 s of bytes
    (2.0**39, 2.0**29, 0.5),   # both equal
    (0.0, 0.0, 0.0),
], ids=["compute-bound", "memory-bound", "balanced", "no-work"])
def test_the_floor_is_the_larger_of_the_compute_and_the_memory_time(
        flops: float, bytes_moved: float, floor: float) -> None:
    assert MACHINE.floor_s(flops, bytes_moved) == floor


def test_best_of_keeps_the_higher_of_each_ceiling_and_its_own_device_name() -> None:
    fast_math = Roofline("a", matmul_flops_per_s=10.0, copy_bytes_per_s=1.0)
    fast_copy = Roofline("b", matmul_flops_per_s=5.0, copy_bytes_per_s=3.0)
    assert fast_math.best_of(fast_copy) == Roofline("a", 10.0, 3.0)
    assert fast_copy.best_of(fast_math) == Roofline("b", 10.0, 3.0)
    assert fast_math.best_of(fast_math) == fast_math
