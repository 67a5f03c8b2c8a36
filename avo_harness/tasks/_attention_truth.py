"""The float64 truth of attention in one pass over the keys, for large cases on a GPU.

The plain reference materialises every score in float64 and masks, softmaxes and multiplies
it in several memory-bound passes: on an H200 that was 1.5 s for one verified round of each
benchmark configuration, most of an evaluation's timing phase and of a paired timing. This
is the same computation, fused as FlashAttention is (an online softmax over key tiles),
with every product, exponential and sum in float64, so nothing is materialised and its
result is the plain reference's to float64 rounding (``tests/test_attention_truth.py``
holds the two together on every layout, mask, GQA and tail, in the interpreter and on a
GPU). Harness code: it runs in the parent, never in a candidate's process.
"""
from __future__ import annotations

import math
from typing import Any

import torch

#: Scores below which the plain reference stays (small cases: a compile is not worth it).
MIN_SCORES = 1 << 24

#: The kernel; None before first use, False where it cannot be built.
_kernel: Any = None


def applies(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether ``truth`` takes this case: a CUDA device with Triton and enough scores."""
    if not q.is_cuda or q.shape[-1] > 256:
        return False
    b, hq, nq, _ = q.shape
    return b * hq * nq * k.shape[2] >= MIN_SCORES and _compiled() is not None


class Unavailable(RuntimeError):
    """This Triton cannot build the kernel here (the plain reference is taken from then on)."""


def truth(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
          scale: float) -> torch.Tensor:
    """Attention of (B, Hq, Nq, D) q over (B, Hkv, Nk, D) k and v, in float64."""
    global _kernel
    kernel = _compiled()
    if kernel is None:
        raise Unavailable("no Triton")
    b, hq, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    out = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    # A tensor: a Python float would reach the kernel as float32.
    scale64 = torch.full((1,), scale, dtype=torch.float64, device=q.device)
    block_d = max(16, 1 << (d - 1).bit_length())
    block_m = 64 if block_d <= 128 else 32
    grid = (math.ceil(nq / block_m), b * hq)
    # In float64 before the kernel: Triton 3.6 lays out a float64 dot's operands by the
    # narrowest type they were converted from, and cannot lower that from 16 bits (seen on
    # an H200: "fp64 don't support largeK MMA"). It costs a copy, nothing next to the dots.
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    try:
        kernel[grid](q, k, v, out, scale64, nq, nk, hq, hq // hkv, d,
                     *q.stride(), *k.stride(), *v.stride(), *out.stride(),
                     CAUSAL=bool(causal), BLOCK_M=block_m, BLOCK_N=32, BLOCK_D=block_d,
                     num_warps=8, num_stages=2)
    except Exception as exc:  # a compile this Triton refuses (its passes raise RuntimeError)
        _kernel = False
        raise Unavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    return out


def _compiled() -> Any:
    """The Triton kernel, defined on first use (Triton imported lazily); None without it."""
    global _kernel
    if _kernel is None:
        try:
            _kernel = _define()
        except ImportError:
            _kernel = False
    return _kernel or None


def _define() -> Any:
    import triton
    import triton.language as tl

    ints = ["nq", "nk", "hq", "group", "d", *(f"s{t}{a}" for t in "qkvo" for a in "bhnd")]

    @triton.jit(do_not_specialize=ints)
    def _truth_fwd(Q, K, V, O, Scale, nq, nk, hq, group, d,
                   sqb, sqh, sqn, sqd, skb, skh, skn, skd, svb, svh, svn, svd,
                   sob, soh, son, sod,
                   CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_D: tl.constexpr):
        start_m = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // hq
        h = bh % hq
        hk = h // group
        rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, BLOCK_D)
        row_ok = rows < nq
        dim_ok = dims < d
        q = tl.load(Q + b.to(tl.int64) * sqb + h.to(tl.int64) * sqh
                    + rows[:, None].to(tl.int64) * sqn + dims[None, :] * sqd,
                    mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
        q = q * tl.load(Scale)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float64)
        l_i = tl.zeros([BLOCK_M], tl.float64)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float64)
        shift = nk - nq
        hi = nk
        if CAUSAL:  # query i sees key j iff j <= i + shift: keys past the tile's last add 0
            hi = tl.minimum(nk, tl.maximum(0, (start_m + 1) * BLOCK_M + shift))
        k_base = K + b.to(tl.int64) * skb + hk.to(tl.int64) * skh
        v_base = V + b.to(tl.int64) * svb + hk.to(tl.int64) * svh
        for start_n in range(0, hi, BLOCK_N):
            cols = start_n + tl.arange(0, BLOCK_N)
            col_ok = cols < nk
            kt = tl.load(k_base + cols[None, :].to(tl.int64) * skn + dims[:, None] * skd,
                         mask=dim_ok[:, None] & col_ok[None, :], other=0.0)
            s = tl.dot(q, kt)
            seen = col_ok[None, :] & row_ok[:, None]
            if CAUSAL:
                seen = seen & (cols[None, :] <= rows[:, None] + shift)
            s = tl.where(seen, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row that has seen no key yet keeps -inf: exponentials relative to 0 there.
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_safe)
            p = tl.exp(s - m_safe[:, None])
            vt = tl.load(v_base + cols[:, None].to(tl.int64) * svn + dims[None, :] * svd,
                         mask=col_ok[:, None] & dim_ok[None, :], other=0.0)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p, vt)
            m_i = m_new
        # A row that sees no key (i + shift < 0) outputs zeros, as the plain reference does.
        out = tl.where(l_i[:, None] > 0, acc / tl.where(l_i > 0, l_i, 1.0)[:, None], 0.0)
        tl.store(O + b.to(tl.int64) * sob + h.to(tl.int64) * soh
                 + rows[:, None].to(tl.int64) * son + dims[None, :] * sod, out,
                 mask=row_ok[:, None] & dim_ok[None, :])

    return _truth_fwd
