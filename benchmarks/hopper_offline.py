"""The seed's kernels compiled for sm_90 on a CPU: registers, spills, shared memory.

    python benchmarks/hopper_offline.py --out FILE.jsonl [--jobs 2] [--limit N]

Needs Triton 3.6 (the device's version; its wheel bundles ptxas and cuobjdump) and a
CPU torch; no GPU and no device time. Compiles ``_attn_fwd_ptr`` and ``_attn_fwd_tma``
of ``candidates/attention/seed.py`` for every launch setting of the tunable space (path:
pointer, TMA, TMA persistent, warp-specialized, warp-specialized persistent; BLOCK_M,
BLOCK_N, warps, stages; D 64 and 128; causal or not; a non-causal tail for the
specialized paths) with the argument specialization the JIT would use on the suite's
inputs. Writes one JSON line per setting (registers, stack, shared memory, warps, counts
of ``wgmma``, TMA copies and ``setmaxnreg`` in the PTX, or the compile error), then
checks the seed's CONSTRAINTS against them: settings the constraints allow that exceed
the H100's 227 KiB of shared memory per block (must be none) and feasible settings they
exclude. This is how CONSTRAINTS was fitted (benchmarks/NOTES-hopper.md).
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "candidates" / "attention" / "seed.py"
SMEM_LIMIT = 232448  # bytes per block on an H100
_N, _HEADS = 4096, 16


def _seed() -> Any:
    spec = importlib.util.spec_from_file_location("offline_seed", SEED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(fn: Any, values: dict[str, Any], constants: dict[str, Any], warps: int,
             stages: int) -> Any:
    """``triton.compile`` with the JIT's rules: pointers and multiples of 16 get the
    divisibility attribute, a 1 becomes a constant, unless the kernel says otherwise."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    plain = {param.name for param in fn.params if param.do_not_specialize}
    signature, attrs, constants = {}, {}, dict(constants)
    for i, name in enumerate(fn.arg_names):
        value = values.get(name)
        if name in constants:
            signature[name] = "constexpr"
        elif value is None:
            signature[name], attrs[(i,)] = "*bf16", [["tt.divisibility", 16]]
        elif isinstance(value, float):
            signature[name] = "fp32"
        elif value == 1 and name not in plain:
            signature[name], constants[name] = "constexpr", 1
        else:
            signature[name] = "i32"
            if value % 16 == 0 and name not in plain:
                attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn, signature, constexprs=constants, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": warps, "num_stages": stages})


def _resources(kernel: Any) -> dict[str, Any]:
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    try:
        usage = subprocess.run([str(tool), "--dump-resource-usage", f.name],
                               capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    ptx = kernel.asm["ptx"]

    def field(name: str) -> int | None:
        match = re.search(rf"{name}:(\d+)", usage)
        return int(match.group(1)) if match else None

    return {"regs": field("REG"), "stack": field("STACK"), "smem": kernel.metadata.shared,
            "warps": kernel.metadata.num_warps, "wgmma": ptx.count("wgmma.mma_async"),
            "tma": ptx.count("cp.async.bulk.tensor"), "setmaxnreg": ptx.count("setmaxnreg")}


def compile_setting(job: tuple[Any, ...]) -> dict[str, Any]:
    """One launch setting, as the seed's ``launch`` would compile it."""
    d, causal, block_m, block_n, warps, stages, path, tail = job
    seed = _seed()
    strides = {"b": _HEADS * _N * d, "h": _N * d, "row": d}
    values: dict[str, Any] = {"Q": None, "K": None, "V": None, "O": None, "qk_scale": 0.1,
                              "Hq": _HEADS, "GROUP": 1, "Nq": _N, "Nk": _N, "D": d}
    for t in "qkvo":
        row = "m" if t in "qo" else "n"
        values |= {f"stride_{t}b": strides["b"], f"stride_{t}h": strides["h"],
                   f"stride_{t}{row}": strides["row"], f"stride_{t}d": 1}
    common = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_D": d, "CAUSAL": causal,
              "HEAVY_FIRST": True, "RESCALE_TAU": 0.0}
    try:
        if path == "pointer":
            kernel = _compile(seed._attn_fwd_ptr, values,
                              {**common, "EVEN_D": True, "SPLIT_MASKED": True,
                               "DOT_FP32": False, "PRECISION": "tf32"}, warps, stages)
        else:
            values |= {"n_m": _N // block_m, "n_tiles": _HEADS * _N // block_m}
            kernel = _compile(seed._attn_fwd_tma, values,
                              {**common, "SPLIT_MASKED": True, "TAIL": causal or tail,
                               "WARP_SPECIALIZE": path.startswith("ws") and not tail,
                               "PERSISTENT": path.endswith("persistent")}, warps, stages)
        result = _resources(kernel)
    except Exception as exc:  # a setting that does not compile is data
        result = {"error": f"{type(exc).__name__}: {str(exc)[-200:]}"}
    return {"job": list(job), **result}


def settings() -> list[tuple[Any, ...]]:
    jobs = []
    for d, causal, bm, bn, w, s in itertools.product((64, 128), (False, True), (64, 128, 256),
                                                     (32, 64, 128), (4, 8), (2, 3, 4)):
        for path in ("pointer", "tma", "tma-persistent"):
            jobs.append((d, causal, bm, bn, w, s, path, False))
        if w == 4 and not causal:  # specialization: 4 warps, unmasked loops only
            for path in ("ws", "ws-persistent"):
                jobs += [(d, causal, bm, bn, w, s, path, False),
                         (d, causal, bm, bn, w, s, path, True)]
    return jobs


def check_constraints(rows: list[dict[str, Any]]) -> tuple[list[Any], int, int]:
    """Settings allowed but over the limit, feasible settings excluded, feasible total."""
    sys.path.insert(0, str(ROOT))
    from avo_harness.tunables import read_space

    space = read_space(SEED.read_text())
    allowed_failing, excluded, feasible = [], 0, 0
    for row in rows:
        d, causal, bm, bn, w, s, path, _tail = row["job"]
        fails = "error" in row or row["smem"] > SMEM_LIMIT
        groups = [f"D{d}_CAUSAL", f"D{d}_CAUSAL_LONG"] if causal else [f"D{d}"]
        for group in groups:
            values = dict(space.values) | {
                f"{group}_BLOCK_M": bm, f"{group}_BLOCK_N": bn, f"{group}_WARPS": w,
                f"{group}_STAGES": s, f"{group}_TMA": path != "pointer",
                f"{group}_PERSISTENT": path.endswith("persistent")}
            if f"{group}_WS" in values:
                values[f"{group}_WS"] = path.startswith("ws")
            allowed = space.allows(values)
            if fails and allowed:
                allowed_failing.append((group, row["job"]))
            if not fails:
                feasible += 1
                excluded += not allowed
    return allowed_failing, excluded, feasible


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per setting")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, help="compile only the first N settings")
    args = parser.parse_args()
    jobs = settings()[:args.limit]
    with ProcessPoolExecutor(args.jobs) as pool, args.out.open("w") as out:
        rows = []
        for row in pool.map(compile_setting, jobs):
            out.write(json.dumps(row) + "\n")
            rows.append(row)
    over = [r for r in rows if "error" in r or r["smem"] > SMEM_LIMIT]
    allowed_failing, excluded, feasible = check_constraints(rows)
    print(f"{len(rows)} settings compiled; {len(over)} do not fit or do not compile")
    print(f"CONSTRAINTS allow {len(allowed_failing)} of those and exclude {excluded} "
          f"of {feasible} feasible (setting, group) pairs")
    for group, job in allowed_failing:
        print(f"  allowed but does not fit: {group} {job}")
    return 1 if allowed_failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
