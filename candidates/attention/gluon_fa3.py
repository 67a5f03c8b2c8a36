"""FA3-style attention for Hopper in Gluon, with the seed's Triton kernels as fallback.

Why: the seed's kernels are Triton 3.6's automatic pipelining and warp specialization, which keep
the two consumer warp groups in phase and never overlap a warp group's softmax with its
own GEMMs (docs/results.md). Gluon (``triton.experimental.gluon``) writes the
Hopper primitives out by hand. Two kernels:

* ``_g_attn_fwd_ws`` (the default, ``*_WS``): FA3's partition of a 128-row tile. A
  producer partition loads K/V blocks with TMA (``tma.async_copy_global_to_shared``) into
  a ring of STAGES slots, each with K-ready, V-ready and empty mbarriers; two consumer
  warp groups of 64 rows each (the default partition and a 4-warp worker) run on their
  own (they share only the ring, so the warp schedulers interleave one's softmax with the
  other's GEMMs), with registers moved by ``setmaxnreg`` (producer 24, consumers 240).
* ``_g_attn_fwd``: one partition of 4 or 8 warps issuing its own loads into the ring.

Both order the GEMMs within a warp group as FA3 does: S_j = Q K_j^T is issued, then
O += P_{j-1} V_{j-1}, and the softmax of S_j runs while the second GEMM is in flight
(asynchronous ``warpgroup_mma``, P fed from registers). Interior key blocks run without
masks; only the key tail and the causal diagonal pay for them; with causal masking each
consumer group skips the blocks its own rows cannot see. Not FA3's explicit ping-pong
(named barriers ordering the groups), nor a persistent grid: benchmarks/NOTES-gluon.md
says what was measured and what limits it.

The Gluon path takes bfloat16/float16 inputs with D in {64, 128} on a GPU of compute
capability 9.x (not the interpreter), whose last dimension is contiguous and whose base
and other strides are 16-byte aligned: it reads q, k and v through 4-D tensor descriptors
(B, H, N, D), so any such layout, GQA, tails and Nq != Nk work, out-of-range rows reading
as zeros and never stored. Everything else (float32, other D, other layouts, other GPUs,
the CPU interpreter) takes the Triton kernels of ``_triton_attention.py`` (the helper
beside it, the seed's kernels) with the values fastest on an H100 in the sweep of
docs/results.md (``_TRITON_CFG``). Per group
(D <= 64 or not, causal or not) ``*_GLUON`` chooses the path: D=64 measured slower in
Gluon on the H200, so those groups start on Triton and a search can hand them back.
"""
from __future__ import annotations

import functools
import math
import os

import torch
import triton

from _triton_attention import config as triton_config
from _triton_attention import group as triton_group
from _triton_attention import launch as triton_launch

# Read and rewritten by the evolution loop (avo_harness.tunables): keep it a literal.
# The Gluon path's launch per group: tile rows (16 per warp: one warp group per 64 rows),
# key block, ring depth, warps.
TUNABLES = {
    "D64_GLUON": {"value": False, "choices": [False, True]},
    "D64_WS": {"value": True, "choices": [False, True]},
    "D64_BLOCK_M": {"value": 128, "choices": [64, 128]},
    "D64_BLOCK_N": {"value": 128, "choices": [64, 128]},
    "D64_STAGES": {"value": 2, "choices": [2, 3, 4]},
    "D64_WARPS": {"value": 8, "choices": [4, 8]},
    "D64_CAUSAL_GLUON": {"value": False, "choices": [False, True]},
    "D64_CAUSAL_WS": {"value": True, "choices": [False, True]},
    "D64_CAUSAL_BLOCK_M": {"value": 128, "choices": [64, 128]},
    "D64_CAUSAL_BLOCK_N": {"value": 128, "choices": [64, 128]},
    "D64_CAUSAL_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D64_CAUSAL_WARPS": {"value": 8, "choices": [4, 8]},
    "D128_GLUON": {"value": True, "choices": [False, True]},
    "D128_WS": {"value": True, "choices": [False, True]},
    "D128_BLOCK_M": {"value": 128, "choices": [64, 128]},
    "D128_BLOCK_N": {"value": 128, "choices": [64, 128]},
    "D128_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D128_WARPS": {"value": 8, "choices": [4, 8]},
    "D128_CAUSAL_GLUON": {"value": True, "choices": [False, True]},
    "D128_CAUSAL_WS": {"value": True, "choices": [False, True]},
    "D128_CAUSAL_BLOCK_M": {"value": 128, "choices": [64, 128]},
    "D128_CAUSAL_BLOCK_N": {"value": 64, "choices": [64, 128]},
    "D128_CAUSAL_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D128_CAUSAL_WARPS": {"value": 8, "choices": [4, 8]},
    "HEAVY_FIRST": {"value": True, "choices": [False, True]},
}
# *_WS: the warp-specialized kernel (a TMA producer partition and two consumer warp groups
# of 64 rows each: BLOCK_M 128, 4 warps per partition) instead of the single-partition one.
# A warp group (4 warps) covers 64 rows: 16 rows per warp (128 rows on 4 warps spills at
# D=128, sm_90 offline compile); the
# D=128 tiles keep Q and the K/V ring within the 227 KiB of shared memory per block
# (units of 256 bytes: BLOCK_M + 2 * STAGES * BLOCK_N of them).
CONSTRAINTS = [
    "D64_BLOCK_M == 16 * D64_WARPS",
    "D64_CAUSAL_BLOCK_M == 16 * D64_CAUSAL_WARPS",
    "D128_BLOCK_M == 16 * D128_WARPS",
    "D128_CAUSAL_BLOCK_M == 16 * D128_CAUSAL_WARPS",
    "not D64_WS or D64_BLOCK_M == 128",
    "not D64_CAUSAL_WS or D64_CAUSAL_BLOCK_M == 128",
    "not D128_WS or D128_BLOCK_M == 128",
    "not D128_CAUSAL_WS or D128_CAUSAL_BLOCK_M == 128",
    "D128_BLOCK_M + 2 * D128_STAGES * D128_BLOCK_N <= 900",
    "D128_CAUSAL_BLOCK_M + 2 * D128_CAUSAL_STAGES * D128_CAUSAL_BLOCK_N <= 900",
]
#: The Triton fallback's causal groups split at this many keys (its *_LONG values).
LONG_KEYS = 2048
#: The H100 sweep's values (docs/results.md), used unchanged by the Triton fallback (not
#: searched here).
_TRITON_CFG = {
    "D64_BLOCK_M": 128,
    "D64_BLOCK_N": 64,
    "D64_WARPS": 8,
    "D64_STAGES": 3,
    "D64_TMA": False,
    "D64_WS": False,
    "D64_PERSISTENT": False,
    "D64_CAUSAL_BLOCK_M": 64,
    "D64_CAUSAL_BLOCK_N": 64,
    "D64_CAUSAL_WARPS": 4,
    "D64_CAUSAL_STAGES": 3,
    "D64_CAUSAL_TMA": False,
    "D64_CAUSAL_PERSISTENT": False,
    "D64_CAUSAL_LONG_BLOCK_M": 128,
    "D64_CAUSAL_LONG_BLOCK_N": 64,
    "D64_CAUSAL_LONG_WARPS": 8,
    "D64_CAUSAL_LONG_STAGES": 4,
    "D64_CAUSAL_LONG_TMA": False,
    "D64_CAUSAL_LONG_PERSISTENT": False,
    "D128_BLOCK_M": 128,
    "D128_BLOCK_N": 128,
    "D128_WARPS": 4,
    "D128_STAGES": 2,
    "D128_TMA": True,
    "D128_WS": True,
    "D128_PERSISTENT": True,
    "D128_CAUSAL_BLOCK_M": 64,
    "D128_CAUSAL_BLOCK_N": 64,
    "D128_CAUSAL_WARPS": 4,
    "D128_CAUSAL_STAGES": 3,
    "D128_CAUSAL_TMA": False,
    "D128_CAUSAL_PERSISTENT": False,
    "D128_CAUSAL_LONG_BLOCK_M": 128,
    "D128_CAUSAL_LONG_BLOCK_N": 128,
    "D128_CAUSAL_LONG_WARPS": 8,
    "D128_CAUSAL_LONG_STAGES": 3,
    "D128_CAUSAL_LONG_TMA": True,
    "D128_CAUSAL_LONG_PERSISTENT": False,
    "HEAVY_FIRST": True,
    "SPLIT_MASKED": True,
    "RESCALE_TAU": 0.0,
}

_CFG = {name: spec["value"] for name, spec in TUNABLES.items()}
_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_LOG2E = 1.4426950408889634


# ---------------------------------------------------------------------------------------
# The Gluon path (sm_90): explicit TMA ring, mbarriers and asynchronous wgmma.
# ---------------------------------------------------------------------------------------
try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared, mbarrier, tma, warpgroup_mma, warpgroup_mma_wait)
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    _HAVE_GLUON = True
except ImportError:  # a Triton without Gluon: only the Triton path exists
    _HAVE_GLUON = False


if _HAVE_GLUON:
    @gluon.jit
    def _g_load_kv(k_desc, v_desc, k_smem, v_smem, k_bars, v_bars, kv_b, kv_h, block,
                   pred, BLOCK_N: gl.constexpr, STAGES: gl.constexpr):
        """Issue the TMA loads of key block ``block`` into its ring slot (one thread)."""
        slot = block % STAGES
        kb = k_bars.index(slot)
        vb = v_bars.index(slot)
        mbarrier.expect(kb, k_desc.block_type.nbytes, pred=pred)
        tma.async_copy_global_to_shared(k_desc, [kv_b, kv_h, block * BLOCK_N, 0], kb,
                                        k_smem.index(slot), pred=pred)
        mbarrier.expect(vb, v_desc.block_type.nbytes, pred=pred)
        tma.async_copy_global_to_shared(v_desc, [kv_b, kv_h, block * BLOCK_N, 0], vb,
                                        v_smem.index(slot), pred=pred)

    @gluon.jit
    def _g_softmax(s, m_i, l_i, qk_scale, start_n, row_shift, Nk,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, MASKED: gl.constexpr,
                   CAUSAL: gl.constexpr, s_layout: gl.constexpr):
        """Online softmax of one score tile in the exp2 domain: p, the new max and sum,
        and alpha, the factor the accumulator must be rescaled by."""
        if MASKED:
            cols = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
            visible = gl.expand_dims(cols < Nk, 0)
            if CAUSAL:
                rows = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, s_layout))
                visible = visible & (gl.expand_dims(cols - row_shift, 0)
                                     <= gl.expand_dims(rows, 1))
            s = gl.where(visible, s, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
        if MASKED:
            # A row that has seen no key keeps m = -inf: subtract 0 instead (its p is 0).
            m_sub = gl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_sub = m_new
        p = gl.exp2(s * qk_scale - gl.expand_dims(m_sub, 1))
        alpha = gl.exp2(m_i - m_sub)
        l_i = l_i * alpha + gl.sum(p, 1)
        return p, m_new, l_i, alpha

    @gluon.jit
    def _g_first_block(q_s, k_smem, q_bar, k_bars, qk_scale, row_shift, Nk,
                       BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                       CAUSAL: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr,
                       p_layout: gl.constexpr):
        """Key block 0 once Q and K_0 are in, always through the masked softmax (it is right
        for any block): the accumulator, P_0, and the running max and sum the steps take."""
        m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
        l_i = gl.zeros([BLOCK_M], gl.float32, gl.SliceLayout(1, s_layout))
        o = gl.zeros([BLOCK_M, HEAD_D], gl.float32, o_layout)
        mbarrier.wait(q_bar, 0)
        mbarrier.wait(k_bars.index(0), 0)
        k_t = k_smem.index(0).reshape([BLOCK_N, HEAD_D]).permute((1, 0))
        s_tok = warpgroup_mma(q_s, k_t, gl.zeros([BLOCK_M, BLOCK_N], gl.float32, s_layout),
                              use_acc=False, is_async=True)
        s = warpgroup_mma_wait(0, deps=(s_tok,))
        p, m_i, l_i, alpha = _g_softmax(s, m_i, l_i, qk_scale, 0, row_shift, Nk,
                                        BLOCK_M, BLOCK_N, True, CAUSAL, s_layout)
        return o, gl.convert_layout(p.to(q_s.dtype), p_layout), m_i, l_i

    @gluon.jit
    def _g_step(j, q_s, k_smem, v_smem, k_bars, v_bars, k_desc, v_desc, kv_b, kv_h,
                o, p_prev, m_i, l_i, qk_scale, row_shift, Nk, n_total,
                BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                STAGES: gl.constexpr, MASKED: gl.constexpr, CAUSAL: gl.constexpr,
                s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr):
        """Key block j, FA3's intra-warpgroup order: issue S_j = Q K_j^T, then
        O += P_{j-1} V_{j-1}; the softmax of S_j runs while the second GEMM is in flight."""
        slot = j % STAGES
        phase = (j // STAGES) & 1
        mbarrier.wait(k_bars.index(slot), phase)
        k_t = k_smem.index(slot).reshape([BLOCK_N, HEAD_D]).permute((1, 0))
        s_tok = warpgroup_mma(q_s, k_t, gl.zeros([BLOCK_M, BLOCK_N], gl.float32, s_layout),
                              use_acc=False, is_async=True)
        prev = j - 1
        pslot = prev % STAGES
        mbarrier.wait(v_bars.index(pslot), (prev // STAGES) & 1)
        v_prev = v_smem.index(pslot).reshape([BLOCK_N, HEAD_D])
        o_tok = warpgroup_mma(p_prev, v_prev, o, is_async=True)
        s = warpgroup_mma_wait(1, deps=(s_tok,))
        p, m_i, l_i, alpha = _g_softmax(s, m_i, l_i, qk_scale, j * BLOCK_N, row_shift, Nk,
                                        BLOCK_M, BLOCK_N, MASKED, CAUSAL, s_layout)
        o = warpgroup_mma_wait(0, deps=(o_tok,))
        # Block j-1 is consumed by this warp group; once every warp is past this point
        # its slot takes block j-1+STAGES.
        gl.thread_barrier()
        nxt = prev + STAGES
        _g_load_kv(k_desc, v_desc, k_smem, v_smem, k_bars, v_bars, kv_b, kv_h, nxt,
                   nxt < n_total, BLOCK_N, STAGES)
        o = o * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
        p_new = gl.convert_layout(p.to(k_desc.dtype), p_layout)
        return o, p_new, m_i, l_i

    @gluon.jit(do_not_specialize=["Nq", "Nk"])
    def _g_attn_fwd(q_desc, k_desc, v_desc, o_desc, qk_scale, Hq, GROUP, Nq, Nk,
                    BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                    STAGES: gl.constexpr, CAUSAL: gl.constexpr, HEAVY_FIRST: gl.constexpr,
                    num_warps: gl.constexpr):
        dtype: gl.constexpr = q_desc.dtype
        pid_m = gl.program_id(0)
        if HEAVY_FIRST:
            pid_m = gl.num_programs(0) - 1 - pid_m
        pid_bh = gl.program_id(1)
        off_b = pid_bh // Hq
        off_h = pid_bh % Hq
        kv_h = off_h // GROUP
        start_m = pid_m * BLOCK_M

        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, HEAD_D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout,
                                                     k_width=2)

        q_smem = gl.allocate_shared_memory(dtype, [1, 1, BLOCK_M, HEAD_D], q_desc.layout)
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, 1, BLOCK_N, HEAD_D],
                                           k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, 1, BLOCK_N, HEAD_D],
                                           v_desc.layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        k_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(q_bar, count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(k_bars.index(i), count=1)
            mbarrier.init(v_bars.index(i), count=1)
        fence_async_shared()

        # Key blocks [0, n_full) need no mask for any row of the tile, [n_full, n_total)
        # do (the key tail, the causal diagonal). A tile whose rows see no key still runs
        # block 0, fully masked: its p is 0 and it writes zeros.
        causal_offset = Nk - Nq
        if CAUSAL:
            end = gl.maximum(gl.minimum(Nk, start_m + BLOCK_M + causal_offset), 0)
            full = gl.minimum(gl.maximum(start_m + causal_offset + 1, 0), end)
        else:
            end = Nk
            full = Nk
        n_full = full // BLOCK_N
        n_total = gl.maximum(gl.cdiv(end, BLOCK_N), 1)
        row_shift = start_m + causal_offset

        mbarrier.expect(q_bar, q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [off_b, off_h, start_m, 0], q_bar, q_smem)
        for i in gl.static_range(STAGES):
            _g_load_kv(k_desc, v_desc, k_smem, v_smem, k_bars, v_bars, off_b, kv_h, i,
                       i < n_total, BLOCK_N, STAGES)

        q_s = q_smem.reshape([BLOCK_M, HEAD_D])
        o, p_prev, m_i, l_i = _g_first_block(q_s, k_smem, q_bar, k_bars, qk_scale, row_shift,
                                             Nk, BLOCK_M, BLOCK_N, HEAD_D, CAUSAL, s_layout,
                                             o_layout, p_layout)

        for j in range(1, n_full):
            o, p_prev, m_i, l_i = _g_step(
                j, q_s, k_smem, v_smem, k_bars, v_bars, k_desc, v_desc, off_b, kv_h,
                o, p_prev, m_i, l_i, qk_scale, row_shift, Nk, n_total,
                BLOCK_M, BLOCK_N, HEAD_D, STAGES, False, CAUSAL, s_layout, o_layout, p_layout)
        for j in range(gl.maximum(n_full, 1), n_total):
            o, p_prev, m_i, l_i = _g_step(
                j, q_s, k_smem, v_smem, k_bars, v_bars, k_desc, v_desc, off_b, kv_h,
                o, p_prev, m_i, l_i, qk_scale, row_shift, Nk, n_total,
                BLOCK_M, BLOCK_N, HEAD_D, STAGES, True, CAUSAL, s_layout, o_layout, p_layout)

        last = n_total - 1
        lslot = last % STAGES
        mbarrier.wait(v_bars.index(lslot), (last // STAGES) & 1)
        o_tok = warpgroup_mma(p_prev, v_smem.index(lslot).reshape([BLOCK_N, HEAD_D]), o,
                              is_async=True)
        o = warpgroup_mma_wait(0, deps=(o_tok,))

        mbarrier.invalidate(q_bar)
        for i in gl.static_range(STAGES):
            mbarrier.invalidate(k_bars.index(i))
            mbarrier.invalidate(v_bars.index(i))

        # Rows that saw no key have l == 0 and o == 0: they write zeros.
        l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
        out = o / gl.expand_dims(gl.where(l_o == 0.0, 1.0, l_o), 1)
        gl.thread_barrier()
        q_s.store(out.to(dtype))
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(o_desc, [off_b, off_h, start_m, 0], q_smem)
        tma.store_wait(0)

    # ---- Warp-specialized variant: a producer warp and two consumer warp groups ----

    @gluon.jit
    def _g_ws_load(k_desc, v_desc, k_smem, v_smem, k_bars, v_bars, empty_bars, off_b, kv_h,
                   n_total, BLOCK_N: gl.constexpr, STAGES: gl.constexpr):
        """The producer warp: each key block into its slot once both consumers freed it."""
        for i in range(n_total):
            # mbarriers start with phase 1 complete: the first round waits for nothing.
            mbarrier.wait(empty_bars.index(i % STAGES), ((i // STAGES) & 1) ^ 1)
            _g_load_kv(k_desc, v_desc, k_smem, v_smem, k_bars, v_bars, off_b, kv_h, i, True,
                       BLOCK_N, STAGES)

    @gluon.jit
    def _g_ws_step(j, q_s, k_smem, v_smem, k_bars, v_bars, empty_bars,
                   o, p_prev, m_i, l_i, qk_scale, row_shift, Nk,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                   STAGES: gl.constexpr, MASKED: gl.constexpr, CAUSAL: gl.constexpr,
                   s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr):
        """``_g_step`` for one consumer warp group: it frees slot j-1 to the producer."""
        slot = j % STAGES
        mbarrier.wait(k_bars.index(slot), (j // STAGES) & 1)
        k_t = k_smem.index(slot).reshape([BLOCK_N, HEAD_D]).permute((1, 0))
        s_tok = warpgroup_mma(q_s, k_t, gl.zeros([BLOCK_M, BLOCK_N], gl.float32, s_layout),
                              use_acc=False, is_async=True)
        prev = j - 1
        pslot = prev % STAGES
        mbarrier.wait(v_bars.index(pslot), (prev // STAGES) & 1)
        v_prev = v_smem.index(pslot).reshape([BLOCK_N, HEAD_D])
        o_tok = warpgroup_mma(p_prev, v_prev, o, is_async=True)
        s = warpgroup_mma_wait(1, deps=(s_tok,))
        p, m_i, l_i, alpha = _g_softmax(s, m_i, l_i, qk_scale, j * BLOCK_N, row_shift, Nk,
                                        BLOCK_M, BLOCK_N, MASKED, CAUSAL, s_layout)
        o = warpgroup_mma_wait(0, deps=(o_tok,))
        gl.thread_barrier()  # every warp of this group is done with slot j-1
        mbarrier.arrive(empty_bars.index(pslot), count=1)
        o = o * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
        p_new = gl.convert_layout(p.to(k_smem.dtype), p_layout)
        return o, p_new, m_i, l_i

    @gluon.jit
    def _g_ws_compute(q_desc, o_desc, q_smem, q_bar, k_smem, v_smem, k_bars, v_bars,
                      empty_bars, off_b, off_h, start_m, qk_scale, Nq, Nk, n_total,
                      BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                      STAGES: gl.constexpr, CAUSAL: gl.constexpr):
        """One consumer warp group: 64 query rows from ``start_m`` over the shared ring.

        The producer loads the tile's ``n_total`` key blocks; with causal masking this
        group's rows may see fewer (its own ``n_mine``): it skips the rest but still frees
        their slots, each once the block is loaded, so every arrival counts towards the
        phase it belongs to."""
        dtype: gl.constexpr = q_desc.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout,
                                                     k_width=2)
        mbarrier.expect(q_bar, q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [off_b, off_h, start_m, 0], q_bar, q_smem)
        row_shift = start_m + Nk - Nq
        if CAUSAL:
            end = gl.maximum(gl.minimum(Nk, row_shift + BLOCK_M), 0)
            full = gl.minimum(gl.maximum(row_shift + 1, 0), end)
        else:
            end = Nk
            full = Nk
        n_full = full // BLOCK_N
        n_mine = gl.minimum(gl.maximum(gl.cdiv(end, BLOCK_N), 1), n_total)
        q_s = q_smem.reshape([BLOCK_M, HEAD_D])
        o, p_prev, m_i, l_i = _g_first_block(q_s, k_smem, q_bar, k_bars, qk_scale, row_shift,
                                             Nk, BLOCK_M, BLOCK_N, HEAD_D, CAUSAL, s_layout,
                                             o_layout, p_layout)
        for j in range(1, n_full):
            o, p_prev, m_i, l_i = _g_ws_step(
                j, q_s, k_smem, v_smem, k_bars, v_bars, empty_bars, o, p_prev, m_i, l_i,
                qk_scale, row_shift, Nk, BLOCK_M, BLOCK_N, HEAD_D, STAGES, False, CAUSAL,
                s_layout, o_layout, p_layout)
        for j in range(gl.maximum(n_full, 1), n_mine):
            o, p_prev, m_i, l_i = _g_ws_step(
                j, q_s, k_smem, v_smem, k_bars, v_bars, empty_bars, o, p_prev, m_i, l_i,
                qk_scale, row_shift, Nk, BLOCK_M, BLOCK_N, HEAD_D, STAGES, True, CAUSAL,
                s_layout, o_layout, p_layout)
        last = n_mine - 1
        lslot = last % STAGES
        mbarrier.wait(v_bars.index(lslot), (last // STAGES) & 1)
        o_tok = warpgroup_mma(p_prev, v_smem.index(lslot).reshape([BLOCK_N, HEAD_D]), o,
                              is_async=True)
        o = warpgroup_mma_wait(0, deps=(o_tok,))
        gl.thread_barrier()
        mbarrier.arrive(empty_bars.index(lslot), count=1)
        for j in range(n_mine, n_total):
            mbarrier.wait(v_bars.index(j % STAGES), (j // STAGES) & 1)
            mbarrier.arrive(empty_bars.index(j % STAGES), count=1)
        l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
        out = o / gl.expand_dims(gl.where(l_o == 0.0, 1.0, l_o), 1)
        q_s.store(out.to(dtype))
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(o_desc, [off_b, off_h, start_m, 0], q_smem)
        tma.store_wait(0)

    @gluon.jit(do_not_specialize=["Nq", "Nk"])
    def _g_attn_fwd_ws(q_desc, k_desc, v_desc, o_desc, qk_scale, Hq, GROUP, Nq, Nk,
                       BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                       STAGES: gl.constexpr, CAUSAL: gl.constexpr, HEAVY_FIRST: gl.constexpr,
                       num_warps: gl.constexpr):
        """FA3's partition of the tile: two consumer warp groups of 64 rows each (the
        default partition and a 4-warp worker) and a TMA producer partition, with
        per-slot ready (K, V) and empty barriers; register budgets set per partition."""
        HALF: gl.constexpr = BLOCK_M // 2
        dtype: gl.constexpr = q_desc.dtype
        pid_m = gl.program_id(0)
        if HEAVY_FIRST:
            pid_m = gl.num_programs(0) - 1 - pid_m
        pid_bh = gl.program_id(1)
        off_b = pid_bh // Hq
        off_h = pid_bh % Hq
        kv_h = off_h // GROUP
        start_m = pid_m * BLOCK_M

        q_smem0 = gl.allocate_shared_memory(dtype, [1, 1, HALF, HEAD_D], q_desc.layout)
        q_smem1 = gl.allocate_shared_memory(dtype, [1, 1, HALF, HEAD_D], q_desc.layout)
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, 1, BLOCK_N, HEAD_D],
                                           k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, 1, BLOCK_N, HEAD_D],
                                           v_desc.layout)
        q_bars = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        k_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1],
                                               mbarrier.MBarrierLayout())
        mbarrier.init(q_bars.index(0), count=1)
        mbarrier.init(q_bars.index(1), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(k_bars.index(i), count=1)
            mbarrier.init(v_bars.index(i), count=1)
            mbarrier.init(empty_bars.index(i), count=2)
        fence_async_shared()

        causal_offset = Nk - Nq
        if CAUSAL:
            end = gl.maximum(gl.minimum(Nk, start_m + BLOCK_M + causal_offset), 0)
        else:
            end = Nk
        n_total = gl.maximum(gl.cdiv(end, BLOCK_N), 1)

        gl.warp_specialize([
            (_g_ws_compute, (q_desc, o_desc, q_smem0, q_bars.index(0), k_smem, v_smem, k_bars,
                             v_bars, empty_bars, off_b, off_h, start_m, qk_scale, Nq, Nk,
                             n_total, HALF, BLOCK_N, HEAD_D, STAGES, CAUSAL)),
            (_g_ws_compute, (q_desc, o_desc, q_smem1, q_bars.index(1), k_smem, v_smem, k_bars,
                             v_bars, empty_bars, off_b, off_h, start_m + HALF, qk_scale, Nq,
                             Nk, n_total, HALF, BLOCK_N, HEAD_D, STAGES, CAUSAL)),
            (_g_ws_load, (k_desc, v_desc, k_smem, v_smem, k_bars, v_bars, empty_bars, off_b,
                          kv_h, n_total, BLOCK_N, STAGES)),
        ], [4, 4], [240, 24])


def _gluon_ready(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """The Gluon path's preconditions: sm_90, 16-bit data, D 64 or 128, TMA-able strides."""
    if not _HAVE_GLUON or _INTERPRETED or q.shape[-1] not in (64, 128):
        return False
    if q.dtype not in (torch.float16, torch.bfloat16) or not (k.dtype == v.dtype == q.dtype):
        return False
    for t in (q, k, v):
        if not t.is_cuda or t.stride(-1) != 1 or t.data_ptr() % 16:
            return False
        if any(s * t.element_size() % 16 for s in t.stride()[:-1]):
            return False
    return torch.cuda.get_device_capability(q.device)[0] == 9


def gluon_group(head_dim: int, causal: bool) -> str:
    return ("D64" if head_dim <= 64 else "D128") + ("_CAUSAL" if causal else "")


def gluon_config(name: str) -> dict:
    """A group's Gluon launch parameters."""
    return {"GLUON": _CFG[f"{name}_GLUON"], "WS": _CFG[f"{name}_WS"],
            "BLOCK_M": _CFG[f"{name}_BLOCK_M"], "BLOCK_N": _CFG[f"{name}_BLOCK_N"],
            "STAGES": _CFG[f"{name}_STAGES"],
            "num_warps": _CFG[f"{name}_WARPS"], "HEAVY_FIRST": _CFG["HEAVY_FIRST"]}


@functools.lru_cache(maxsize=16)
def _smem_layout(rows: int, head_d: int, bf16: bool) -> "gl.NVMMASharedLayout":
    return gl.NVMMASharedLayout.get_default_for([1, 1, rows, head_d],
                                                gl.bfloat16 if bf16 else gl.float16)


#: Descriptors of the inputs, by everything a descriptor encodes (address, dtype, shape,
#: strides, block). Building one in Python costs about as much as a short kernel's launch, and
#: the harness's clock, which waits for the GPU before each call, sees all of it. A descriptor
#: is only where and how to read: the data are read afresh by every launch.
_INPUT_DESCRIPTORS: dict[tuple, "TensorDescriptor"] = {}


def _descriptor(t: torch.Tensor, rows: int, *, keep: bool = False) -> "TensorDescriptor":
    """A 4-D (B, H, N, D) descriptor whose blocks are ``rows`` rows of one head; ``keep``:
    an input's, kept for the next call on the same tensor (an output is new every call, and
    a kept descriptor would keep it alive)."""
    key = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()), rows)
    found = _INPUT_DESCRIPTORS.get(key) if keep else None
    if found is None:
        block = [1, 1, rows, t.shape[-1]]
        found = TensorDescriptor(t, list(t.shape), list(t.stride()), block,
                                 _smem_layout(rows, t.shape[-1], t.dtype == torch.bfloat16))
        if keep:
            if len(_INPUT_DESCRIPTORS) >= 6:  # holds at most two calls' inputs alive
                _INPUT_DESCRIPTORS.clear()
            _INPUT_DESCRIPTORS[key] = found
    return found


def gluon_launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                 sm_scale: float, p: dict) -> torch.Tensor:
    """The Gluon kernel with explicit launch parameters (``gluon_config``'s keys)."""
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    block_m, block_n = p["BLOCK_M"], p["BLOCK_N"]
    grid = (triton.cdiv(Nq, block_m), B * Hq)
    if p["WS"]:
        # 12 warps at 168 registers: the producer drops to 24, the consumers get 240.
        _g_attn_fwd_ws[grid](
            _descriptor(q, block_m // 2, keep=True), _descriptor(k, block_n, keep=True),
            _descriptor(v, block_n, keep=True), _descriptor(o, block_m // 2),
            sm_scale * _LOG2E, Hq, Hq // Hkv, Nq, Nk,
            BLOCK_M=block_m, BLOCK_N=block_n, HEAD_D=D, STAGES=p["STAGES"], CAUSAL=causal,
            HEAVY_FIRST=p["HEAVY_FIRST"] and causal, num_warps=4, maxnreg=168)
        return o
    _g_attn_fwd[grid](
        _descriptor(q, block_m, keep=True), _descriptor(k, block_n, keep=True),
        _descriptor(v, block_n, keep=True), _descriptor(o, block_m), sm_scale * _LOG2E,
        Hq, Hq // Hkv, Nq, Nk,
        BLOCK_M=block_m, BLOCK_N=block_n, HEAD_D=D, STAGES=p["STAGES"], CAUSAL=causal,
        HEAVY_FIRST=p["HEAVY_FIRST"] and causal, num_warps=p["num_warps"])
    return o


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              sm_scale: float | None = None) -> torch.Tensor:
    D = q.shape[-1]
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    p = gluon_config(gluon_group(D, causal))
    if p["GLUON"] and sm_scale > 0 and _gluon_ready(q, k, v):
        return gluon_launch(q, k, v, causal, sm_scale, p)
    return triton_launch(q, k, v, causal, sm_scale, triton_config(
        _TRITON_CFG, triton_group(D, causal, k.shape[2], LONG_KEYS)))
