"""Check and time candidates/attention/gluon_fa3.py on a Hopper GPU in one process.

    PYTHONPATH=. python benchmarks/gluon_bench.py [--variants] [--out DIR]

Correctness first: the Gluon kernel called directly (``gluon_launch``) and through
``attention`` on shapes covering tails, Nq != Nk, fully masked causal rows, GQA/MQA,
transposed and padded layouts, float16, D 64 and 128, against a float32 reference
computed here with torch matmuls (rel. error by norm; each output poisoned with NaN first
by allocating through the kernel and checked for NaN; one shape run twice and compared bit
for bit). Then ``triton.testing.do_bench`` medians (L2 flushed between calls by do_bench)
of gluon_fa3, hopper_best and torch SDPA's cuDNN backend on the 12 shapes of
/work/shared/data/h200-attention-baselines.json (bf16, B x N = 32768), with optional
launch variants of the Gluon kernel. Prints a compact table; JSON to --out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import triton

ROOT = Path(__file__).resolve().parent.parent


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "candidates" / "attention"
                                                  / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
              scale: float) -> torch.Tensor:
    """float32 attention, bottom-right causal, zeros for rows that see no key."""
    group = q.shape[1] // k.shape[1]
    kf = k.float().repeat_interleave(group, 1)
    vf = v.float().repeat_interleave(group, 1)
    s = torch.matmul(q.float(), kf.transpose(-1, -2)) * scale
    nq, nk = q.shape[2], k.shape[2]
    if causal:
        vis = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
        s = s.masked_fill(~vis, float("-inf"))
        p = torch.softmax(s, -1).nan_to_num(0.0)
    else:
        p = torch.softmax(s, -1)
    return torch.matmul(p, vf)


def make(b: int, hq: int, hkv: int, nq: int, nk: int, d: int, dtype: torch.dtype,
         layout: str, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    def one(h: int, n: int) -> torch.Tensor:
        if layout == "bnhd":
            return torch.randn(b, n, h, d, generator=gen, device="cuda").to(dtype).transpose(1, 2)
        if layout == "padded":
            return torch.randn(b, h, n, d + 8, generator=gen, device="cuda").to(dtype)[..., :d]
        return torch.randn(b, h, n, d, generator=gen, device="cuda").to(dtype)
    return one(hq, nq), one(hkv, nk), one(hkv, nk)


CHECKS = [  # B, Hq, Hkv, Nq, Nk, D, causal, layout, dtype
    (2, 4, 4, 1000, 1000, 128, False, "bhnd", torch.bfloat16),
    (2, 4, 4, 1000, 1000, 128, True, "bhnd", torch.bfloat16),
    (2, 4, 4, 1000, 1000, 64, False, "bhnd", torch.bfloat16),
    (2, 4, 4, 1000, 1000, 64, True, "bhnd", torch.bfloat16),
    (1, 2, 2, 1, 1, 64, False, "bhnd", torch.float16),
    (1, 2, 2, 1, 1, 64, True, "bhnd", torch.float16),
    (1, 2, 2, 1, 1000, 128, True, "bhnd", torch.bfloat16),
    (1, 2, 2, 70, 20, 64, True, "bhnd", torch.float16),
    (1, 2, 2, 33, 1000, 128, True, "bhnd", torch.bfloat16),
    (1, 6, 3, 17, 1000, 128, False, "bhnd", torch.bfloat16),
    (1, 4, 1, 65, 65, 64, True, "bhnd", torch.float16),
    (2, 4, 2, 300, 513, 128, True, "bnhd", torch.bfloat16),
    (2, 4, 4, 129, 255, 64, False, "padded", torch.float16),
    (2, 8, 2, 4096, 4096, 128, True, "bhnd", torch.bfloat16),
    (1, 8, 8, 4096, 4096, 64, False, "bnhd", torch.bfloat16),
    (4, 16, 16, 1024, 1024, 128, False, "bhnd", torch.bfloat16),
]

SHAPES = [(d, n, h, causal) for d, h in ((64, 32), (128, 16)) for n in (1024, 4096, 16384)
          for causal in (False, True)]


def check(gf: Any, launch: Callable | None, label: str, rows: list) -> bool:
    gen = torch.Generator(device="cuda").manual_seed(0)
    ok_all = True
    for b, hq, hkv, nq, nk, d, causal, layout, dtype in CHECKS:
        q, k, v = make(b, hq, hkv, nq, nk, d, dtype, layout, gen)
        scale = 1.0 / math.sqrt(d)
        ref = reference(q, k, v, causal, scale)
        try:
            ready = gf._gluon_ready(q, k, v)
            if launch is not None and ready:
                out = launch(q, k, v, causal, scale)
            else:
                out = gf.attention(q, k, v, causal=causal)
            torch.cuda.synchronize()
            err = ((out.float() - ref).norm() / ref.norm().clamp_min(1e-6)).item()
            nan = bool(out.isnan().any())
            ok = err < 2e-2 and not nan
            msg = f"rel {err:.2e}{' NaN' if nan else ''}"
        except Exception as exc:  # report and go on
            ok, ready, msg = False, None, f"{type(exc).__name__}: {str(exc)[:300]}"
        ok_all &= ok
        rows.append({"variant": label, "case": [b, hq, hkv, nq, nk, d, causal, layout,
                                                str(dtype)[6:]], "gluon": ready, "ok": ok,
                     "msg": msg})
        if not ok:
            print(f"  FAIL {label} {rows[-1]['case']} {msg}", flush=True)
    return ok_all


def tflops(d: int, n: int, h: int, causal: bool, ms: float) -> float:
    b = 32768 // n
    flops = 4.0 * b * h * n * n * d / (2 if causal else 1)
    return flops / ms / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="", help="json list of [group, BLOCK_M, BLOCK_N, STAGES, WARPS, WS]")
    ap.add_argument("--check-variants", default="",
                    help="json list of variants also run over the correctness shapes")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--smoke", action="store_true",
                    help="only run the default kernels once per D and causal; exit 1 if wrong")
    ap.add_argument("--no-ws", action="store_true", help="default groups without *_WS")
    args = ap.parse_args()
    t0 = time.time()
    gf, hb = _module("gluon_fa3"), _module("hopper_best")
    if args.no_ws:
        for name in list(gf._CFG):
            if name.endswith("_WS"):
                gf._CFG[name] = False
    if args.smoke:
        gen = torch.Generator(device="cuda").manual_seed(3)
        bad = 0
        for d in (64, 128):
            for causal in (False, True):
                q, k, v = make(1, 4, 4, 1000, 1000, d, torch.bfloat16, "bhnd", gen)
                out = gf.attention(q, k, v, causal=causal)
                ref = reference(q, k, v, causal, 1.0 / math.sqrt(d))
                err = ((out.float() - ref).norm() / ref.norm()).item()
                print(f"smoke d{d} causal={causal}: rel {err:.2e}", flush=True)
                bad += not err < 2e-2
        raise SystemExit(1 if bad else 0)
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    results: dict[str, Any] = {"checks": [], "timing": []}
    variants = [tuple(v) for v in json.loads(args.variants)] if args.variants else []

    def variant_launch(v: tuple) -> Callable:
        _, bm, bn, st, w, ws = v
        p = {"GLUON": True, "WS": bool(ws), "BLOCK_M": bm, "BLOCK_N": bn, "STAGES": st, "num_warps": w,
             "HEAVY_FIRST": True}
        return lambda q, k, vv, c, s: gf.gluon_launch(q, k, vv, c, s, p)

    if not args.skip_check:
        ok = check(gf, None, "default", results["checks"])
        print(f"correctness default: {'ok' if ok else 'FAILED'} ({time.time() - t0:.0f}s)",
              flush=True)
        for var in [tuple(v) for v in json.loads(args.check_variants or "[]")]:
            ok = check(gf, variant_launch(var), str(var), results["checks"])
            print(f"correctness {var}: {'ok' if ok else 'FAILED'} ({time.time() - t0:.0f}s)",
                  flush=True)
        # Determinism: the same inputs twice, bit for bit.
        gen = torch.Generator(device="cuda").manual_seed(1)
        for d, causal in ((128, False), (128, True), (64, False)):
            q, k, v = make(4, 16, 16, 4096, 4096, d, torch.bfloat16, "bhnd", gen)
            a = gf.attention(q, k, v, causal=causal)
            same = all(torch.equal(a, gf.attention(q, k, v, causal=causal)) for _ in range(5))
            print(f"bitwise repeat d{d} causal={causal}: {same}", flush=True)
            results["checks"].append({"variant": "repeat", "case": [d, causal], "ok": same})

    from torch.nn.attention import SDPBackend, sdpa_kernel
    sdpa = torch.nn.functional.scaled_dot_product_attention
    table = []
    for d, n, h, causal in SHAPES:
        b = 32768 // n
        gen = torch.Generator(device="cuda").manual_seed(2)
        q, k, v = make(b, h, h, n, n, d, torch.bfloat16, "bhnd", gen)
        row: dict[str, Any] = {"d": d, "n": n, "b": b, "h": h, "causal": causal}
        fns: dict[str, Callable] = {
            "gluon_fa3": lambda: gf.attention(q, k, v, causal=causal),
            "hopper_best": lambda: hb.attention(q, k, v, causal=causal),
        }
        group = gf.gluon_group(d, causal)
        for var in variants:
            if var[0] == group:
                fn = variant_launch(var)
                fns[("ws" if var[5] else "v") + "-".join(map(str, var[1:5]))] = (
                    lambda fn=fn: fn(q, k, v, causal, 1.0 / math.sqrt(d)))

        def cudnn() -> torch.Tensor:
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return sdpa(q, k, v, is_causal=causal)
        fns["cudnn"] = cudnn
        ref = cudnn().float()
        for name, fn in fns.items():
            try:
                out = fn()
                err = ((out.float() - ref).norm() / ref.norm()).item()
                ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
                row[name] = round(tflops(d, n, h, causal, ms), 1)
                if err > 2e-2:
                    row[name + "_err"] = err
            except Exception as exc:
                row[name] = None
                row[name + "_exc"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        table.append(row)
        print(json.dumps(row), flush=True)
    results["timing"] = table
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gluon_bench.json").write_text(json.dumps(results, indent=1))
    names = list(dict.fromkeys(k for r in table for k in r if k not in (
        "d", "n", "b", "h", "causal") and not k.endswith(("_err", "_exc"))))
    print(f"\n{'shape':<22}" + "".join(f"{nm:>14}" for nm in names) + f"{'g/hb':>7}{'g/cudnn':>8}")
    for r in table:
        shape = f"d{r['d']}-n{r['n']}{'-causal' if r['causal'] else ''}"
        cells = "".join(f"{r[nm]:>14.1f}" if r.get(nm) else f"{'-':>14}" for nm in names)
        g, hbv, cu = r.get("gluon_fa3") or 0, r.get("hopper_best") or 1, r.get("cudnn") or 1
        print(f"{shape:<22}{cells}{g / hbv:>7.3f}{g / cu:>8.3f}")
    for nm in names:
        vals = [r.get(nm) for r in table]
        if all(vals):
            print(f"geomean {nm}: {math.exp(sum(map(math.log, vals)) / len(vals)):.1f}")
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
