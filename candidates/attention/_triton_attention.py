"""The Triton attention kernels of the candidates beside it (seed, gluon_fa3).

One source for the kernels: each candidate keeps its own TUNABLES (the search rewrites
them in the candidate's file) and passes its values here through ``config``. A helper
module travels with the candidates that import it: the search stages it beside every
proposal, the agent reads it as the candidate's helper. To change a kernel for one
candidate only, copy this file under a new name (a helper's name is its identity in the
lineage) and import that.

A FlashAttention-2 style forward: online softmax over key blocks in the exp2 domain, the
row max taken on the raw scores and the scale folded into one FMA per score.
Bottom-right-aligned causal masking, GQA by index arithmetic, any strides. Key blocks
that every query row of a tile can see run without masks; only the tail block (and, for
causal, the diagonal band) pays for masking.

Two kernels, chosen per call (the choice is honest dispatch, never a shortcut):

* TMA path (``_attn_fwd_tma``): on a CUDA GPU of compute capability >= 9 with
  float16/bfloat16 inputs whose last dimension is contiguous and whose base
  pointers and other strides are 16-byte aligned (what tensor descriptors need).
  Q/K/V/O move through device-side tensor descriptors made per (batch, head);
  out-of-range rows and head-dim columns read as zeros and are never stored.
  Its moves are tunables: warp specialization of the key loop (Triton's automatic
  producer/consumer split, Hopper needs descriptors for it), a persistent grid,
  heavy-first tile order for causal, conditional rescaling.
* Pointer path (``_attn_fwd_ptr``): everything else -- float32, unaligned or
  non-unit-stride inputs, GPUs before Hopper, and the CPU Triton interpreter
  (whose descriptor loads are wrong on 16-bit types and whose ``tl.dot`` is wrong
  on bf16, so there the blocks go to float32 first).

Masked tiles (causal, or a key tail) never run warp-specialized (see ``launch``).

What the kernels specialize on. Triton compiles one kernel per distinct key: every
constexpr, and for each int argument whether it is 1 and whether it is a multiple of 16.
The correctness search draws lengths 1..4096, 1-12 heads, GQA groups 1, 2, 4 and four
layouts, so specializing on every int compiled about a hundred kernels per evaluation,
most of its time on a GPU. Where the divisibility buys nothing, it is switched off:

* ``Nq``, ``Nk``, ``Hq`` and ``GROUP`` (both kernels; ``n_m``, ``n_tiles``): they bound
  loops, mask rows and key columns and pick heads; none is along the contiguous head
  dimension, so none limits how wide a load or store is. A length of 1 compiled into a
  constant also broke the persistent TMA kernel (Triton 3.6).
* the last-dimension strides of the pointer kernel (``stride_qd``...) keep their
  specialization on 1 (a unit stride is what makes loads contiguous) but not on 16: a
  stride that is not 1 (the "mixed" layout's D-major v) is the slow path either way.

Kept: ``D`` (its multiple of 16 makes the head-dimension masks of whole vectors: a
pointer kernel built without it took 168 registers instead of 128 at D=64 on the H100,
one block per SM instead of two), and the batch, head and row strides (their multiple of
16 is what proves a row's start aligned for 16-byte loads, and the TMA kernel's
descriptors are built from them). The benchmark configurations (16-bit, contiguous, N a
multiple of 128) compile exactly what they compiled before, less the ``Nq``/``Nk``/``Hq``
/``GROUP`` facts the code never used. ``benchmarks/compile_count.py`` counts the kernels
an evaluation's inputs compile, before and after such a change, without a GPU.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_LOG2E = 1.4426950408889634


def _scratch(size: int, alignment: int, stream: int | None) -> torch.Tensor:
    """Global memory for device-side tensor descriptors (Triton asks per launch)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


if not _INTERPRETED:
    triton.set_allocator(_scratch)


@triton.jit
def _finite(m, MASKED: tl.constexpr):
    """A row that has seen no key keeps m = -inf; subtracting 0 instead keeps exp2 free
    of NaN (its scores are -inf, so its p is 0 either way). Unmasked blocks need no test."""
    if MASKED:
        m = tl.where(m == float("-inf"), 0.0, m)
    return m


@triton.jit
def _softmax_step(acc, l_i, m_i, q, kt, v, qk_scale, start_n, row_shift, Nk,
                  BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
                  RESCALE_TAU: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """One key block: scores, online-softmax update, P @ V. kt is (BLOCK_D, BLOCK_N).

    Query row r of the tile sees key j iff j < Nk and (causal) j - row_shift <= r, with
    row_shift = first row of the tile + Nk - Nq. Written so that the row index is a bare
    arange: Triton 3.6's warp specialization splits the tile's rows between two consumer
    groups and offsets a splatted row base twice (rows r + 64 of the second group would
    be masked as rows r + 128)."""
    if DOT_FP32:
        qk = tl.dot(q.to(tl.float32), kt.to(tl.float32), input_precision=PRECISION)
    else:
        qk = tl.dot(q, kt, input_precision=PRECISION)
    if MASKED:
        offs_n = start_n + tl.arange(0, BLOCK_N)
        visible = offs_n[None, :] < Nk
        if CAUSAL:
            rows = tl.arange(0, q.shape[0])
            visible = visible & ((offs_n - row_shift)[None, :] <= rows[:, None])
        qk = tl.where(visible, qk, float("-inf"))
    # qk_scale > 0 (the wrapper makes it so), so the max commutes with the scale.
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    if RESCALE_TAU > 0:
        # Rescale only when some row's max grew by more than TAU (log2 units); until
        # then the stale max stands and p stays below 2**TAU, which fp32 sums and
        # 16-bit P tiles hold as well as p <= 1. The test is one scalar per tile.
        grow = tl.where(m_new > m_i, m_new - m_i, 0.0)
        if tl.max(grow, 0) > RESCALE_TAU:
            alpha = tl.math.exp2(m_i - _finite(m_new, MASKED))
            l_i = l_i * alpha
            acc = acc * alpha[:, None]
            m_i = m_new
        p = tl.math.exp2(qk * qk_scale - _finite(m_i, MASKED)[:, None])
        l_i = l_i + tl.sum(p, 1)
    else:
        m_sub = _finite(m_new, MASKED)
        p = tl.math.exp2(qk * qk_scale - m_sub[:, None])
        alpha = tl.math.exp2(m_i - m_sub)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        m_i = m_new
    if DOT_FP32:
        acc = tl.dot(p, v.to(tl.float32), acc, input_precision=PRECISION)
    else:
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
    return acc, l_i, m_i


@triton.jit
def _key_range(pid_m, Nq, Nk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               CAUSAL: tl.constexpr, SPLIT_MASKED: tl.constexpr):
    """[0, full) needs no mask for any row of the tile; [full, end) needs masks."""
    causal_offset = Nk - Nq
    if CAUSAL:
        end = tl.maximum(tl.minimum(Nk, (pid_m + 1) * BLOCK_M + causal_offset), 0)
        full = tl.minimum(tl.maximum(pid_m * BLOCK_M + causal_offset + 1, 0), end)
    else:
        end = Nk
        full = Nk
    if SPLIT_MASKED:
        full = (full // BLOCK_N) * BLOCK_N
    else:
        full = 0
    return full, end


@triton.jit
def _attn_tile_ptr(acc, l_i, m_i, q, qk_scale, k_base, v_base, stride_kn, stride_kd,
                   stride_vn, stride_vd, offs_d, lo, hi, Nk, D, row_shift,
                   BLOCK_N: tl.constexpr, EVEN_D: tl.constexpr, MASKED: tl.constexpr,
                   CAUSAL: tl.constexpr, RESCALE_TAU: tl.constexpr, DOT_FP32: tl.constexpr,
                   PRECISION: tl.constexpr):
    d_ok = offs_d < D
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
        v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASKED:
            n_ok = offs_n < Nk
            kt = tl.load(kt_ptrs, mask=d_ok[:, None] & n_ok[None, :], other=0.0)
            v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        elif EVEN_D:
            kt = tl.load(kt_ptrs)
            v = tl.load(v_ptrs)
        else:
            kt = tl.load(kt_ptrs, mask=d_ok[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=d_ok[None, :], other=0.0)
        acc, l_i, m_i = _softmax_step(acc, l_i, m_i, q, kt, v, qk_scale, start_n, row_shift,
                                      Nk, BLOCK_N, MASKED, CAUSAL, RESCALE_TAU, DOT_FP32,
                                      PRECISION)
    return acc, l_i, m_i


@triton.jit(do_not_specialize=["Hq", "GROUP", "Nq", "Nk"],
            do_not_specialize_on_alignment=["stride_qd", "stride_kd", "stride_vd", "stride_od"])
def _attn_fwd_ptr(Q, K, V, O, qk_scale,
                  stride_qb, stride_qh, stride_qm, stride_qd,
                  stride_kb, stride_kh, stride_kn, stride_kd,
                  stride_vb, stride_vh, stride_vn, stride_vd,
                  stride_ob, stride_oh, stride_om, stride_od,
                  Hq, GROUP, Nq, Nk, D,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                  EVEN_D: tl.constexpr, CAUSAL: tl.constexpr, SPLIT_MASKED: tl.constexpr,
                  HEAVY_FIRST: tl.constexpr, RESCALE_TAU: tl.constexpr,
                  DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    if HEAVY_FIRST:
        pid_m = tl.num_programs(0) - 1 - pid_m
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // Hq).to(tl.int64)
    off_h = pid_bh % Hq
    off_hkv = (off_h // GROUP).to(tl.int64)
    off_h = off_h.to(tl.int64)
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
    row_shift = pid_m * BLOCK_M + Nk - Nq
    full, end = _key_range(pid_m, Nq, Nk, BLOCK_M, BLOCK_N, CAUSAL, SPLIT_MASKED)
    acc, l_i, m_i = _attn_tile_ptr(acc, l_i, m_i, q, qk_scale, k_base, v_base,
                                   stride_kn, stride_kd, stride_vn, stride_vd, offs_d,
                                   0, full, Nk, D, row_shift, BLOCK_N, EVEN_D, False,
                                   CAUSAL, RESCALE_TAU, DOT_FP32, PRECISION)
    acc, l_i, m_i = _attn_tile_ptr(acc, l_i, m_i, q, qk_scale, k_base, v_base,
                                   stride_kn, stride_kd, stride_vn, stride_vd, offs_d,
                                   full, end, Nk, D, row_shift, BLOCK_N, EVEN_D, True,
                                   CAUSAL, RESCALE_TAU, DOT_FP32, PRECISION)

    # Rows that see no key have l == 0 and acc == 0: they output zeros.
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh
             + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
             out.to(O.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


@triton.jit
def _attn_block_tma(acc, l_i, m_i, q, qk_scale, k_desc, v_desc, start_n, row_shift, Nk,
                    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
                    RESCALE_TAU: tl.constexpr):
    kt = k_desc.load([start_n, 0]).T
    v = v_desc.load([start_n, 0])
    return _softmax_step(acc, l_i, m_i, q, kt, v, qk_scale, start_n, row_shift, Nk, BLOCK_N,
                         MASKED, CAUSAL, RESCALE_TAU, False, "tf32")


@triton.jit
def _attn_tile_tma(tile, Q, K, V, O, qk_scale,
                   stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om,
                   Hq, GROUP, Nq, Nk, D, n_m,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   CAUSAL: tl.constexpr, SPLIT_MASKED: tl.constexpr, TAIL: tl.constexpr,
                   HEAVY_FIRST: tl.constexpr,
                   WARP_SPECIALIZE: tl.constexpr, RESCALE_TAU: tl.constexpr):
    """One (batch, head, query block) tile through tensor descriptors."""
    pid_bh = tile // n_m
    pid_m = tile % n_m
    if HEAVY_FIRST:
        # Within a head the last query blocks see the most keys (causal): run them
        # first so the short ones fill the tail of the grid.
        pid_m = n_m - 1 - pid_m
    off_b = (pid_bh // Hq).to(tl.int64)
    off_h = pid_bh % Hq
    off_hkv = (off_h // GROUP).to(tl.int64)
    off_h = off_h.to(tl.int64)
    q_desc = tl.make_tensor_descriptor(Q + off_b * stride_qb + off_h * stride_qh,
                                       shape=[Nq, D], strides=[stride_qm, 1],
                                       block_shape=[BLOCK_M, BLOCK_D])
    k_desc = tl.make_tensor_descriptor(K + off_b * stride_kb + off_hkv * stride_kh,
                                       shape=[Nk, D], strides=[stride_kn, 1],
                                       block_shape=[BLOCK_N, BLOCK_D])
    v_desc = tl.make_tensor_descriptor(V + off_b * stride_vb + off_hkv * stride_vh,
                                       shape=[Nk, D], strides=[stride_vn, 1],
                                       block_shape=[BLOCK_N, BLOCK_D])
    o_desc = tl.make_tensor_descriptor(O + off_b * stride_ob + off_h * stride_oh,
                                       shape=[Nq, D], strides=[stride_om, 1],
                                       block_shape=[BLOCK_M, BLOCK_D])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    q = q_desc.load([pid_m * BLOCK_M, 0])
    row_shift = pid_m * BLOCK_M + Nk - Nq
    full, end = _key_range(pid_m, Nq, Nk, BLOCK_M, BLOCK_N, CAUSAL, SPLIT_MASKED)
    if TAIL and not SPLIT_MASKED:
        for start_n in range(0, end, BLOCK_N):
            acc, l_i, m_i = _attn_block_tma(acc, l_i, m_i, q, qk_scale, k_desc, v_desc,
                                            start_n, row_shift, Nk, BLOCK_N, True, CAUSAL,
                                            RESCALE_TAU)
    else:
        if not TAIL:
            full = end  # every key block is whole and unmasked
        # The only loop warp specialization may take: launch specializes no kernel with
        # a TAIL, so then this is the kernel's one loop.
        for start_n in tl.range(0, full, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
            acc, l_i, m_i = _attn_block_tma(acc, l_i, m_i, q, qk_scale, k_desc, v_desc,
                                            start_n, row_shift, Nk, BLOCK_N, False, CAUSAL,
                                            RESCALE_TAU)
        if TAIL:
            for start_n in range(full, end, BLOCK_N):
                acc, l_i, m_i = _attn_block_tma(acc, l_i, m_i, q, qk_scale, k_desc, v_desc,
                                                start_n, row_shift, Nk, BLOCK_N, True, CAUSAL,
                                                RESCALE_TAU)
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_desc.store([pid_m * BLOCK_M, 0], out.to(O.dtype.element_ty))


@triton.jit(do_not_specialize=["Hq", "GROUP", "Nq", "Nk", "n_m", "n_tiles"])
def _attn_fwd_tma(Q, K, V, O, qk_scale,
                  stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                  stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om,
                  Hq, GROUP, Nq, Nk, D, n_m, n_tiles,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                  CAUSAL: tl.constexpr, SPLIT_MASKED: tl.constexpr, TAIL: tl.constexpr,
                  HEAVY_FIRST: tl.constexpr,
                  WARP_SPECIALIZE: tl.constexpr, PERSISTENT: tl.constexpr,
                  RESCALE_TAU: tl.constexpr):
    # Lengths stay run-time values: a length of 1 specialized into a constant broke the
    # persistent kernel's compilation (Triton 3.6); see the module's docstring.
    if PERSISTENT:
        for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
            _attn_tile_tma(tile, Q, K, V, O, qk_scale,
                           stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                           stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om,
                           Hq, GROUP, Nq, Nk, D, n_m, BLOCK_M, BLOCK_N, BLOCK_D, CAUSAL,
                           SPLIT_MASKED, TAIL, HEAVY_FIRST, WARP_SPECIALIZE,
                           RESCALE_TAU)
    else:
        _attn_tile_tma(tl.program_id(0), Q, K, V, O, qk_scale,
                       stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                       stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om,
                       Hq, GROUP, Nq, Nk, D, n_m, BLOCK_M, BLOCK_N, BLOCK_D, CAUSAL,
                       SPLIT_MASKED, TAIL, HEAVY_FIRST, WARP_SPECIALIZE,
                       RESCALE_TAU)


def _tma_ready(*tensors: torch.Tensor) -> bool:
    """Tensor descriptors need Hopper, 16-bit data, a unit last stride, 16-byte alignment."""
    for t in tensors:
        if not t.is_cuda or t.dtype not in (torch.float16, torch.bfloat16) or t.stride(-1) != 1:
            return False
        if t.data_ptr() % 16 or any(s * t.element_size() % 16 for s in t.stride()[:-1]):
            return False
    return torch.cuda.get_device_capability(tensors[0].device)[0] >= 9


_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def group(head_dim: int, causal: bool, keys: int, long_keys: int) -> str:
    """The prefix of the tunables that apply to this head dimension, masking and length:
    D <= 64 or not, non-causal, causal, causal over at least ``long_keys`` keys."""
    name = ("D64" if head_dim <= 64 else "D128") + ("_CAUSAL" if causal else "")
    return name + ("_LONG" if causal and keys >= long_keys else "")


def config(values: dict, name: str) -> dict:
    """Group ``name``'s tunables of ``values`` as launch parameters (causal groups never
    warp-specialize)."""
    return {"BLOCK_M": values[f"{name}_BLOCK_M"], "BLOCK_N": values[f"{name}_BLOCK_N"],
            "num_warps": values[f"{name}_WARPS"], "num_stages": values[f"{name}_STAGES"],
            "TMA": values[f"{name}_TMA"], "WARP_SPECIALIZE": values.get(f"{name}_WS", False),
            "PERSISTENT": values[f"{name}_PERSISTENT"],
            **{k: values[k] for k in ("HEAVY_FIRST", "SPLIT_MASKED", "RESCALE_TAU")}}


def launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
           sm_scale: float | None, p: dict) -> torch.Tensor:
    """Attention with explicit launch parameters (``config``'s keys)."""
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    if sm_scale < 0:
        q, sm_scale = -q, -sm_scale  # the kernels take row maxima before scaling
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    block_d = max(16, triton.next_power_of_2(D))
    block_m, block_n = p["BLOCK_M"], p["BLOCK_N"]
    qk_scale = sm_scale * _LOG2E
    if p["TMA"] and not _INTERPRETED and _tma_ready(q, k, v, o):
        # Triton 3.6 specializes the key loop into producer and consumer warp groups only
        # with 4 warps per group and no branch in the loop (RESCALE_TAU adds one), and
        # only one loop per kernel. A loop that masks (causal, or a tail block when Nk is
        # not a multiple of BLOCK_N) measured slower specialized, and with 3+ stages it
        # returned NaN on the H100: masked tiles never run specialized.
        tail = causal or Nk % block_n != 0
        ws = p["WARP_SPECIALIZE"] and p["num_warps"] == 4 and not p["RESCALE_TAU"] and not tail
        n_m = triton.cdiv(Nq, block_m)
        n_tiles = n_m * B * Hq
        grid = (min(n_tiles, _sm_count(q.device)) if p["PERSISTENT"] else n_tiles,)
        _attn_fwd_tma[grid](
            q, k, v, o, qk_scale,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
            Hq, Hq // Hkv, Nq, Nk, D, n_m, n_tiles,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, CAUSAL=causal,
            SPLIT_MASKED=p["SPLIT_MASKED"], TAIL=tail,
            HEAVY_FIRST=p["HEAVY_FIRST"], WARP_SPECIALIZE=ws, PERSISTENT=p["PERSISTENT"],
            RESCALE_TAU=p["RESCALE_TAU"], num_warps=p["num_warps"], num_stages=p["num_stages"],
        )
        return o
    stages, precision = p["num_stages"], "tf32"
    if q.element_size() > 2:
        # float32 tiles are twice as large: keep a pipelined K/V tile within shared memory.
        # Hopper's tf32 truncates, so float32 products are three tf32 ones on the tensor
        # cores (each operand's high and low halves: float32's accuracy to a few ulp).
        # Exact products ("ieee") unroll into FMAs: 19 s of compiling a 4-warp kernel at
        # D = 128 (sm_90, benchmarks/compile_time.py), 4.7 s this way; float32 is checked,
        # never timed.
        block_n, stages, precision = min(block_n, 32), 1, "tf32x3"
    grid = (triton.cdiv(Nq, block_m), B * Hq)
    _attn_fwd_ptr[grid](
        q, k, v, o, qk_scale,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        Hq, Hq // Hkv, Nq, Nk, D,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, EVEN_D=D == block_d,
        CAUSAL=causal, SPLIT_MASKED=p["SPLIT_MASKED"], HEAVY_FIRST=p["HEAVY_FIRST"],
        RESCALE_TAU=p["RESCALE_TAU"], DOT_FP32=_INTERPRETED, PRECISION=precision,
        num_warps=p["num_warps"], num_stages=stages,
    )
    return o
