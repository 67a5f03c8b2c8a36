"""Small bugs in the seeds' Triton kernels: what each breaks, and its edits (old, new).

The edits are applied to the seed's own source when the corpus is built, so the wrong
kernels stay the seeds' kernels as those evolve; an edit whose old text is gone fails
loudly. Attention's edit ``candidates/attention/_triton_attention.py`` (the kernels
``seed.py`` imports), rmsnorm's ``candidates/rmsnorm/seed.py``. None reads out of
bounds: a wrong read would crash the interpreter, not show a wrong result.
"""
from __future__ import annotations

from typing import NamedTuple


class Bug(NamedTuple):
    why: str
    edits: tuple[tuple[str, str], ...]


ATTENTION = {
    "seed_tail_unmasked": Bug(
        "key columns past Nk are not masked (loaded as zeros, they score 0): wrong when "
        "Nk is not a multiple of BLOCK_N",
        (("        visible = offs_n[None, :] < Nk\n",
          "        visible = offs_n[None, :] >= 0\n"),)),
    "seed_rescale_missing": Bug(
        "the accumulator is not rescaled when the running max grows: wrong only past the "
        "first key block",
        (("        l_i = l_i * alpha + tl.sum(p, 1)\n        acc = acc * alpha[:, None]\n",
          "        l_i = l_i * alpha + tl.sum(p, 1)\n"),)),
    "seed_diagonal_unmasked": Bug(
        "the unmasked key range runs to the diagonal of the tile's last row, not its first: "
        "the first rows of a causal tile see keys past their diagonal",
        (("full = tl.minimum(tl.maximum(pid_m * BLOCK_M + causal_offset + 1, 0), end)",
          "full = tl.minimum(tl.maximum((pid_m + 1) * BLOCK_M + causal_offset, 0), end)"),)),
    "seed_heavy_first_shift": Bug(
        "the causal row shift uses the launch order's program id, not the reversed tile "
        "index: wrong for causal with more than one query tile",
        (("    row_shift = pid_m * BLOCK_M + Nk - Nq\n    full, end = _key_range(pid_m, Nq, Nk, "
          "BLOCK_M, BLOCK_N, CAUSAL, SPLIT_MASKED)\n    acc, l_i, m_i = _attn_tile_ptr(",
          "    row_shift = tl.program_id(0) * BLOCK_M + Nk - Nq\n    full, end = _key_range("
          "pid_m, Nq, Nk, BLOCK_M, BLOCK_N, CAUSAL, SPLIT_MASKED)\n    acc, l_i, m_i = "
          "_attn_tile_ptr("),)),
    "seed_exp_not_exp2": Bug(
        "exp where the scale was folded for exp2: every softmax sharpened by log2(e)",
        (("        p = tl.math.exp2(qk * qk_scale - m_sub[:, None])\n"
          "        alpha = tl.math.exp2(m_i - m_sub)\n",
          "        p = tl.exp(qk * qk_scale - m_sub[:, None])\n"
          "        alpha = tl.exp(m_i - m_sub)\n"),)),
    "seed_empty_rows_nan": Bug(
        "no guard for a row that has seen no key: exp2(-inf - -inf) is NaN",
        (("    if MASKED:\n        m = tl.where(m == float(\"-inf\"), 0.0, m)\n", ""),)),
    "seed_grid_floor": Bug(
        "the grid counts whole query tiles only: the rows of a last partial tile are never "
        "written when Nq > BLOCK_M",
        (("    grid = (triton.cdiv(Nq, block_m), B * Hq)\n",
          "    grid = (max(1, Nq // block_m), B * Hq)\n"),)),
    "seed_grid_kv_heads": Bug(
        "the grid has one program per kv head, not per query head: under GQA and MQA the "
        "last query heads are never written",
        (("    grid = (triton.cdiv(Nq, block_m), B * Hq)\n",
          "    grid = (triton.cdiv(Nq, block_m), B * Hkv)\n"),)),
    "seed_kv_batch_stride": Bug(
        "k and v ignore the batch stride: every batch reads batch 0's keys",
        (("    k_base = K + off_b * stride_kb + off_hkv * stride_kh\n"
          "    v_base = V + off_b * stride_vb + off_hkv * stride_vh\n",
          "    k_base = K + off_hkv * stride_kh\n    v_base = V + off_hkv * stride_vh\n"),)),
    "seed_k_with_q_strides": Bug(
        "k is read with q's strides: right only where the two are laid out alike",
        (("        *q.stride(), *k.stride(), *v.stride(), *o.stride(),\n",
          "        *q.stride(), *q.stride(), *v.stride(), *o.stride(),\n"),)),
    "seed_head_offset_packed": Bug(
        "q's head offset is h * D, as in a (B, N, H, D) tensor: only the first head is right "
        "in the other layouts",
        (("    q = tl.load(Q + off_b * stride_qb + off_h * stride_qh\n",
          "    q = tl.load(Q + off_b * stride_qb + off_h * D\n"),)),
}

RMSNORM = {
    "seed_half_accumulator": Bug(
        "the sum of squares is accumulated in x's dtype: a float16 sum overflows",
        (("    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)\n",
          "    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=X.dtype.element_ty)\n"),
         ("        x = x.to(tl.float32)\n        acc += x * x\n", "        acc += x * x\n"))),
    "seed_row_stride_n": Bug(
        "rows are taken as N elements apart (contiguous x): wrong for padded x",
        (("    x_rows = X + (rows64 // T) * stride_xb + (rows64 % T) * stride_xt\n",
          "    x_rows = X + rows64 * N\n"),)),
    "seed_unit_feature_stride": Bug(
        "the feature stride is taken as 1: wrong only for feature-major x",
        (("        x = tl.load(x_rows[:, None] + cols[None, :] * stride_xn, mask=mask, "
          "other=0.0)\n        x = x.to(tl.float32)\n",
          "        x = tl.load(x_rows[:, None] + cols[None, :], mask=mask, other=0.0)\n"
          "        x = x.to(tl.float32)\n"),)),
    "seed_weight_stride": Bug(
        "the weight is read as contiguous, its stride ignored",
        (("        w = tl.load(W + cols * stride_w, mask=cols < N, other=0.0)\n",
          "        w = tl.load(W + cols, mask=cols < N, other=0.0)\n"),)),
    "seed_rows_dropped": Bug(
        "four rows per program and a grid of whole blocks: the last rows % 4 are never "
        "written",
        (('    "BLOCK_M": {"value": 1,', '    "BLOCK_M": {"value": 4,'),
         ('    grid = (triton.cdiv(rows, _CFG["BLOCK_M"]),)\n',
          '    grid = (rows // _CFG["BLOCK_M"],)\n'))),
    "seed_one_tile_store": Bug(
        "the second pass stores the first tile only: wrong for rows wider than BLOCK_N",
        (("    # The second pass re-reads the row, from L2 while it is still there.\n"
          "    for start in range(0, N, BLOCK_N):\n",
          "    # The second pass re-reads the row, from L2 while it is still there.\n"
          "    for start in range(0, BLOCK_N, BLOCK_N):\n"),)),
}
