"""The physical floor of a configuration on this machine: no honest call runs faster.

A call must do its FLOPs and move its bytes; over the machine's measured matrix
rate and copy bandwidth these give two times, and the larger is the floor. A
timing under it is not a fast kernel but a fault (work skipped, cached, or done
outside the clock), so it is rejected, never scored. Both ceilings are measured
once per session, in the parent, by the library that reaches them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Timings below this fraction of the floor are rejected; the margin absorbs clock
#: drift between the measurement of the ceilings and the candidate's run.
SLACK = 0.8


@dataclass(frozen=True)
class Roofline:
    device: str
    matmul_flops_per_s: float
    copy_bytes_per_s: float

    def floor_s(self, flops: float, bytes_moved: float) -> float:
        return max(flops / self.matmul_flops_per_s, bytes_moved / self.copy_bytes_per_s)

    def best_of(self, other: Roofline) -> Roofline:
        """The higher of each ceiling: a busy machine only ever measures them low."""
        return Roofline(self.device, max(self.matmul_flops_per_s, other.matmul_flops_per_s),
                        max(self.copy_bytes_per_s, other.copy_bytes_per_s))


def measure(cuda: bool) -> Roofline:
    """Best of a few runs of a large matrix product and a large device copy."""
    if cuda:
        n, dtype, copy_bytes = 8192, torch.bfloat16, 1 << 30
        device = "cuda"
        name = torch.cuda.get_device_name()
    else:
        n, dtype, copy_bytes = 1024, torch.float32, 1 << 26
        device = "cpu"
        name = "cpu"
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    src = torch.empty(copy_bytes, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    matmul_s = _best(lambda: torch.matmul(a, b), cuda)
    copy_s = _best(lambda: dst.copy_(src), cuda)
    return Roofline(name, 2.0 * n**3 / matmul_s, 2.0 * copy_bytes / copy_s)


def _best(fn: Callable[[], object], cuda: bool, repeats: int = 5) -> float:
    fn()  # warm-up: library handles, workspaces
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best
