"""Seed candidate: an RMSNorm forward kernel in Triton.

One program normalises a block of BLOCK_M rows: a first pass over the row in
BLOCK_N-wide tiles accumulates the sum of squares in float32 (a float16 sum would
overflow), a second pass scales by 1/rms and the weight and rounds once to the
output dtype. x may be (rows, N) or (B, T, N) with any strides; the output is
contiguous.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# Read and rewritten by the evolution loop (avo_harness.tunables): keep it a literal.
TUNABLES = {
    "BLOCK_M": {"value": 1, "choices": [1, 2, 4, 8]},
    "BLOCK_N": {"value": 8192, "choices": [512, 1024, 2048, 4096, 8192, 16384]},
    "num_warps": {"value": 8, "choices": [1, 2, 4, 8, 16]},
}
# Predicates over the tunables above; a configuration that breaks one is never proposed.
CONSTRAINTS = [
    # At most 64 float32 accumulators per thread: beyond that the tile spills registers.
    "BLOCK_M * BLOCK_N <= num_warps * 32 * 64",
]

_CFG = {name: spec["value"] for name, spec in TUNABLES.items()}


@triton.jit
def _rmsnorm_fwd(X, W, Y, eps, R, T, N,
                 stride_xb, stride_xt, stride_xn, stride_w,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < R
    rows64 = rows.to(tl.int64)
    x_rows = X + (rows64 // T) * stride_xb + (rows64 % T) * stride_xt
    y_rows = Y + rows64 * N

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        mask = row_ok[:, None] & (cols < N)[None, :]
        x = tl.load(x_rows[:, None] + cols[None, :] * stride_xn, mask=mask, other=0.0)
        x = x.to(tl.float32)
        acc += x * x
    rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1) / N + eps)

    # The second pass re-reads the row, from L2 while it is still there.
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        mask = row_ok[:, None] & (cols < N)[None, :]
        x = tl.load(x_rows[:, None] + cols[None, :] * stride_xn, mask=mask, other=0.0)
        w = tl.load(W + cols * stride_w, mask=cols < N, other=0.0)
        y = x.to(tl.float32) * rstd[:, None] * w.to(tl.float32)[None, :]
        tl.store(y_rows[:, None] + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    n = x.shape[-1]
    x3 = x if x.dim() == 3 else x.unsqueeze(0)  # a (B, T, N) view: strides kept, no copy
    rows = x3.shape[0] * x3.shape[1]
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    block_n = min(_CFG["BLOCK_N"], max(16, triton.next_power_of_2(n)))
    grid = (triton.cdiv(rows, _CFG["BLOCK_M"]),)
    _rmsnorm_fwd[grid](
        x3, weight, y, eps, rows, x3.shape[1], n,
        *x3.stride(), weight.stride(0),
        BLOCK_M=_CFG["BLOCK_M"], BLOCK_N=block_n, num_warps=_CFG["num_warps"],
    )
    return y
