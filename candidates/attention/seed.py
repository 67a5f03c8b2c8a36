"""Seed candidate: a FlashAttention-2 style forward kernel in Triton.

Online softmax over key blocks in the exp2 domain (the scale is folded into one
multiply), bottom-right-aligned causal masking, GQA by index arithmetic, any
strides. Key blocks that every query row of a tile can see run without masks;
only the tail block (and, for causal, the diagonal band) pays for masking.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

# Read and rewritten by the evolution loop (avo_harness.tunables): keep it a literal.
TUNABLES = {
    "BLOCK_M": {"value": 128, "choices": [16, 32, 64, 128]},
    "BLOCK_N": {"value": 64, "choices": [16, 32, 64, 128]},
    "num_warps": {"value": 8, "choices": [2, 4, 8]},
    "num_stages": {"value": 3, "choices": [1, 2, 3, 4]},
    "SPLIT_MASKED": {"value": True, "choices": [False, True]},
}
# Predicates over the tunables above; a configuration that breaks one is never proposed.
CONSTRAINTS = [
    "BLOCK_M * BLOCK_N <= 128 * 128",
    "not (BLOCK_M == 128 and BLOCK_N == 128 and num_warps < 8)",
]

_CFG = {name: spec["value"] for name, spec in TUNABLES.items()}
# The interpreter's tl.dot is wrong on bf16 operands, so there the blocks go to fp32 first.
_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _attn_tiles(acc, l_i, m_i, q, qk_scale, k_base, v_base,
                stride_kn, stride_kd, stride_vn, stride_vd, offs_m, offs_d, lo, hi, Nk, D, causal_offset,
                BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, MASKED: tl.constexpr,
                CAUSAL: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    d_ok = offs_d < D
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < Nk
        k = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                    mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        if DOT_FP32:
            qk = tl.dot(q.to(tl.float32), k.to(tl.float32), input_precision=PRECISION) * qk_scale
        else:
            qk = tl.dot(q, k, input_precision=PRECISION) * qk_scale
        if MASKED:
            visible = n_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None] + causal_offset)
            qk = tl.where(visible, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # A row that has seen no key yet keeps m = -inf; subtract 0 so exp2 gives 0, not NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(qk - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if DOT_FP32:
            acc += tl.dot(p, v.to(tl.float32), input_precision=PRECISION)
        else:
            acc += tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(Q, K, V, O, qk_scale,
              stride_qb, stride_qh, stride_qm, stride_qd,
              stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd,
              stride_ob, stride_oh, stride_om, stride_od,
              Hq, GROUP, Nq, Nk, D,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              CAUSAL: tl.constexpr, SPLIT_MASKED: tl.constexpr, DOT_FP32: tl.constexpr,
              PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = pid_bh // Hq
    off_h = pid_bh % Hq
    off_hkv = off_h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < Nq
    d_ok = offs_d < D

    q = tl.load(Q + off_b * stride_qb + off_h * stride_qh
                + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    k_base = K + off_b * stride_kb + off_hkv * stride_kh
    v_base = V + off_b * stride_vb + off_hkv * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    causal_offset = Nk - Nq
    if CAUSAL:
        # Keys below `full` are visible to every row of this tile; keys in [full, end) to some.
        end = tl.minimum(Nk, (pid_m + 1) * BLOCK_M + causal_offset)
        full = tl.minimum(tl.maximum(pid_m * BLOCK_M + causal_offset + 1, 0), end)
    else:
        end = Nk
        full = Nk
    if SPLIT_MASKED:
        full = (full // BLOCK_N) * BLOCK_N
        acc, l_i, m_i = _attn_tiles(acc, l_i, m_i, q, qk_scale, k_base, v_base,
                                    stride_kn, stride_kd, stride_vn, stride_vd, offs_m, offs_d,
                                    0, full, Nk, D, causal_offset, BLOCK_N, BLOCK_D,
                                    False, CAUSAL, DOT_FP32, PRECISION)
    else:
        full = 0
    acc, l_i, m_i = _attn_tiles(acc, l_i, m_i, q, qk_scale, k_base, v_base,
                                stride_kn, stride_kd, stride_vn, stride_vd, offs_m, offs_d,
                                full, end, Nk, D, causal_offset, BLOCK_N, BLOCK_D,
                                True, CAUSAL, DOT_FP32, PRECISION)

    # Rows that see no key have l == 0 and acc == 0: they output zeros.
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh
             + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
             out.to(O.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              sm_scale: float | None = None) -> torch.Tensor:
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    block_d = max(16, triton.next_power_of_2(D))
    block_n, stages = _CFG["BLOCK_N"], _CFG["num_stages"]
    precision = "tf32"
    if q.element_size() > 2:
        # float32 tiles are twice as large: keep a pipelined K/V tile within shared memory.
        # Hopper's tf32 truncates, so float32 inputs get exact float32 products.
        block_n, stages, precision = min(block_n, 32), 1, "ieee"
    grid = (triton.cdiv(Nq, _CFG["BLOCK_M"]), B * Hq)
    _attn_fwd[grid](
        q, k, v, o, sm_scale * 1.4426950408889634,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        Hq, Hq // Hkv, Nq, Nk, D,
        BLOCK_M=_CFG["BLOCK_M"], BLOCK_N=block_n, BLOCK_D=block_d,
        CAUSAL=causal, SPLIT_MASKED=_CFG["SPLIT_MASKED"],
        DOT_FP32=_INTERPRETED, PRECISION=precision,
        num_warps=_CFG["num_warps"], num_stages=stages,
    )
    return o
