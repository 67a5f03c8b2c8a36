"""How long one of the seed's attention kernels takes to compile for sm_90, on a CPU.

    PYTHONPATH=. python benchmarks/compile_time.py --out benchmarks/results/compile-time-cpu.json

Triton compiles for a GPU target without one (``triton.compile`` with a ``GPUTarget``; the
wheel ships ``ptxas``), so the cost of a kernel's specialization can be measured here: the
pointer kernel of ``candidates/attention/_triton_attention.py`` with contiguous, aligned
inputs, for each dtype, tile and ``input_precision`` below. On a GPU the compile phase of an
evaluation is bounded by its slowest kernels (the report's ``longest_jobs``): this is where
``ieee`` float32 products (``tl.dot`` unrolled into FMAs) were found to cost ten times
``tf32x3``'s.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "candidates" / "attention"
#: (dtype, BLOCK_M, BLOCK_N, head dimension, input_precision, warps, stages).
SHAPES = [("fp16", 128, 64, 64, "tf32", 8, 3), ("fp16", 128, 128, 128, "tf32", 4, 2),
          ("fp32", 128, 32, 64, "ieee", 8, 1), ("fp32", 128, 32, 64, "tf32x3", 8, 1),
          ("fp32", 128, 32, 128, "ieee", 4, 1), ("fp32", 128, 32, 128, "tf32x3", 4, 1),
          ("fp32", 128, 32, 128, "ieee", 8, 1), ("fp32", 128, 32, 128, "tf32x3", 8, 1)]


def compile_s(dtype: str, block_m: int, block_n: int, d: int, precision: str, warps: int,
              stages: int) -> float:
    """Seconds of ``triton.compile`` of ``_attn_fwd_ptr`` so specialized, for sm_90."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if str(HELPERS) not in sys.path:
        sys.path.insert(0, str(HELPERS))
    import _triton_attention as kernels

    fn = kernels._attn_fwd_ptr
    constants = dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=d, D=d, EVEN_D=True,
                     CAUSAL=False, SPLIT_MASKED=True, HEAVY_FIRST=True, RESCALE_TAU=0.0,
                     DOT_FP32=False, PRECISION=precision)
    signature: dict[str, str] = {}
    fixed: dict[tuple[int, ...], Any] = {}
    attrs: dict[tuple[int, ...], list[list[Any]]] = {}
    for i, name in enumerate(fn.arg_names):
        if name in constants or (name.startswith("stride") and name.endswith("d")):
            signature[name] = "constexpr"  # a unit last stride is specialized to 1
            fixed[(i,)] = constants.get(name, 1)
        elif name in ("Q", "K", "V", "O"):
            signature[name], attrs[(i,)] = f"*{dtype}", [["tt.divisibility", 16]]
        elif name == "qk_scale":
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
            if name.startswith("stride"):
                attrs[(i,)] = [["tt.divisibility", 16]]
    began = time.perf_counter()
    triton.compile(ASTSource(fn, signature, fixed, attrs), target=GPUTarget("cuda", 90, 32),
                   options={"num_warps": warps, "num_stages": stages})
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # Nothing found compiled: a Triton cache of this run's own, removed after it.
    cache = tempfile.TemporaryDirectory(prefix="compile-time-")
    os.environ["TRITON_CACHE_DIR"] = cache.name
    import triton

    rows = []
    try:
        for shape in SHAPES:
            row = dict(zip(("dtype", "block_m", "block_n", "d", "precision", "warps",
                            "stages"), shape), seconds=round(compile_s(*shape), 2))
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        cache.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"triton": triton.__version__, "target": "cuda sm_90",
                                    "kernel": "_attn_fwd_ptr", "compiles": rows}, indent=1)
                        + "\n")

if __name__ == "__main__":
    main()
