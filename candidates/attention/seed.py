"""Seed candidate: a FlashAttention-2 style forward kernel in Triton, with Hopper paths.

The kernels are ``_triton_attention.py``'s, beside this file (its docstring says what
they do): this module is the search's view of them, its TUNABLES and CONSTRAINTS, and
passes its own values to the kernels on every call. The tunables come in groups,
because the best tiles differ: D <= 64 and D > 64, each non-causal, causal, and causal
over at least LONG_KEYS keys (``group``). The values fastest on an H100 in a sweep of
launch settings (docs/results.md) are ``gluon_fa3.py``'s Triton fallback; on the H200
these defaults measured faster (``benchmarks/results/search-600s-h200.log``).
"""
from __future__ import annotations

import torch

from _triton_attention import config, group, launch

# Read and rewritten by the evolution loop (avo_harness.tunables): keep it a literal.
TUNABLES = {
    "D64_BLOCK_M": {"value": 128, "choices": [64, 128, 256]},
    "D64_BLOCK_N": {"value": 64, "choices": [32, 64, 128]},
    "D64_WARPS": {"value": 8, "choices": [4, 8]},
    "D64_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D64_TMA": {"value": False, "choices": [False, True]},
    "D64_WS": {"value": False, "choices": [False, True]},
    "D64_PERSISTENT": {"value": False, "choices": [False, True]},
    "D64_CAUSAL_BLOCK_M": {"value": 128, "choices": [64, 128, 256]},
    "D64_CAUSAL_BLOCK_N": {"value": 64, "choices": [32, 64, 128]},
    "D64_CAUSAL_WARPS": {"value": 8, "choices": [4, 8]},
    "D64_CAUSAL_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D64_CAUSAL_TMA": {"value": False, "choices": [False, True]},
    "D64_CAUSAL_PERSISTENT": {"value": False, "choices": [False, True]},
    "D64_CAUSAL_LONG_BLOCK_M": {"value": 128, "choices": [64, 128, 256]},
    "D64_CAUSAL_LONG_BLOCK_N": {"value": 64, "choices": [32, 64, 128]},
    "D64_CAUSAL_LONG_WARPS": {"value": 8, "choices": [4, 8]},
    "D64_CAUSAL_LONG_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D64_CAUSAL_LONG_TMA": {"value": False, "choices": [False, True]},
    "D64_CAUSAL_LONG_PERSISTENT": {"value": False, "choices": [False, True]},
    "D128_BLOCK_M": {"value": 128, "choices": [64, 128, 256]},
    "D128_BLOCK_N": {"value": 128, "choices": [32, 64, 128]},
    "D128_WARPS": {"value": 4, "choices": [4, 8]},
    "D128_STAGES": {"value": 2, "choices": [2, 3, 4]},
    "D128_TMA": {"value": True, "choices": [False, True]},
    "D128_WS": {"value": True, "choices": [False, True]},
    "D128_PERSISTENT": {"value": True, "choices": [False, True]},
    "D128_CAUSAL_BLOCK_M": {"value": 128, "choices": [64, 128, 256]},
    "D128_CAUSAL_BLOCK_N": {"value": 64, "choices": [32, 64, 128]},
    "D128_CAUSAL_WARPS": {"value": 8, "choices": [4, 8]},
    "D128_CAUSAL_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D128_CAUSAL_TMA": {"value": False, "choices": [False, True]},
    "D128_CAUSAL_PERSISTENT": {"value": False, "choices": [False, True]},
    "D128_CAUSAL_LONG_BLOCK_M": {"value": 128, "choices": [64, 128, 256]},
    "D128_CAUSAL_LONG_BLOCK_N": {"value": 64, "choices": [32, 64, 128]},
    "D128_CAUSAL_LONG_WARPS": {"value": 8, "choices": [4, 8]},
    "D128_CAUSAL_LONG_STAGES": {"value": 3, "choices": [2, 3, 4]},
    "D128_CAUSAL_LONG_TMA": {"value": False, "choices": [False, True]},
    "D128_CAUSAL_LONG_PERSISTENT": {"value": False, "choices": [False, True]},
    "HEAVY_FIRST": {"value": True, "choices": [False, True]},
    "SPLIT_MASKED": {"value": True, "choices": [False, True]},
    "RESCALE_TAU": {"value": 0.0, "choices": [0.0, 8.0]},
}
# Predicates over the tunables above; a configuration that breaks one is never proposed.
# The first of each group drop settings that would change nothing (warp specialization
# needs 4 warps and descriptors; a persistent grid needs descriptors). The rest keep the
# D > 64 tiles within the H100's 227 KiB of shared memory per block, in units of 256
# bytes: Q and the K/V stages take BLOCK_M + 2 * STAGES * BLOCK_N of them, an output tile
# (persistent grid) another BLOCK_M; warp specialization with 64 rows adds 16 KiB, and
# specialized persistent kernels buffer across tiles. Fitted to what Triton 3.6
# allocates for sm_90 over the whole space (docs/results.md).
CONSTRAINTS = [
    "not (D64_WS and D64_WARPS == 8)",
    "not ((D64_WS or D64_PERSISTENT) and not D64_TMA)",
    "not (D64_CAUSAL_PERSISTENT and not D64_CAUSAL_TMA)",
    "not (D64_CAUSAL_LONG_PERSISTENT and not D64_CAUSAL_LONG_TMA)",
    "not (D128_WS and D128_WARPS == 8)",
    "not ((D128_WS or D128_PERSISTENT) and not D128_TMA)",
    "not (D128_CAUSAL_PERSISTENT and not D128_CAUSAL_TMA)",
    "not (D128_CAUSAL_LONG_PERSISTENT and not D128_CAUSAL_LONG_TMA)",
    "not (D64_WS and D64_PERSISTENT and D64_BLOCK_M * D64_BLOCK_N * D64_STAGES > 98304)",
    "D128_BLOCK_M + 2 * D128_STAGES * D128_BLOCK_N <= 908",
    "not D128_PERSISTENT or 2 * D128_BLOCK_M + 2 * D128_STAGES * D128_BLOCK_N <= 908",
    "not D128_WS or 2 * D128_BLOCK_M + 2 * D128_STAGES * D128_BLOCK_N <= 908 "
    "and (D128_BLOCK_M > 64 or D128_STAGES * D128_BLOCK_N <= 358)",
    "not (D128_WS and D128_PERSISTENT) or (D128_STAGES == 2 and D128_BLOCK_M < 256)",
    "D128_CAUSAL_BLOCK_M + 2 * D128_CAUSAL_STAGES * D128_CAUSAL_BLOCK_N <= 908",
    "not D128_CAUSAL_PERSISTENT "
    "or 2 * D128_CAUSAL_BLOCK_M + 2 * D128_CAUSAL_STAGES * D128_CAUSAL_BLOCK_N <= 908",
    "D128_CAUSAL_LONG_BLOCK_M + 2 * D128_CAUSAL_LONG_STAGES * D128_CAUSAL_LONG_BLOCK_N <= 908",
    "not D128_CAUSAL_LONG_PERSISTENT "
    "or 2 * D128_CAUSAL_LONG_BLOCK_M + 2 * D128_CAUSAL_LONG_STAGES * D128_CAUSAL_LONG_BLOCK_N"
    " <= 908",
]
#: Causal attention over at least this many keys takes the *_CAUSAL_LONG tunables: the
#: best tiles differ between short and long causal sequences.
LONG_KEYS = 2048

_CFG = {name: spec["value"] for name, spec in TUNABLES.items()}


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              sm_scale: float | None = None) -> torch.Tensor:
    return launch(q, k, v, causal, sm_scale,
                  config(_CFG, group(q.shape[-1], causal, k.shape[2], LONG_KEYS)))
