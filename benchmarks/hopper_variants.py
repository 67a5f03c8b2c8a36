"""The seed's launch variants on a Hopper GPU: which compile, which are right, which are fast.

    PYTHONPATH=. python benchmarks/hopper_variants.py --out DIR [--variants NAME ...]
        [--write-best PATH]
    PYTHONPATH=. python benchmarks/hopper_variants.py --from-json FILE --write-best PATH

One device call answers what the tunables of ``candidates/attention/seed.py`` are
worth: every variant (a full set of launch parameters, ``seed.launch``) runs on every
suite configuration (``bench_configs(cuda=True)`` of the attention task).

1. Warm-up and check, in parallel: one subprocess per variant compiles it for every
   configuration (into Triton's on-disk cache), runs it once and compares rows of its
   output (the first and last 128 query rows of the first and last head of the first
   and last batch) with a float32 computation of the same rows; then it runs the task's
   boundary cases and a few odd shapes (tails, causal with Nq != Nk, GQA, D=32/96,
   transposed and padded layouts, float16/float32) against the task's float64
   reference. A variant that does not compile, crashes or is wrong on a suite
   configuration is reported and not timed; edge-case failures are reported. A
   subprocess per variant keeps a compiler abort from taking the sweep down.
2. Timing, serially in this process: torch SDPA's cuDNN and flash backends and every
   checked variant, per configuration, with ``triton.testing.do_bench`` (CUDA events,
   L2 cleared before each repetition, median).

Writes ``DIR/variants.json`` (environment, checks, TFLOP/s, geomeans) and prints a
summary: per variant its geomean over the configurations and its ratio to cuDNN's,
and per tunable group of the seed (``seed.group``) the best variant. With
``--write-best PATH`` it also writes a candidate: the seed with, per group, the
tunables of the fastest variant that passed every check (suite rows and edge cases)
and shares the seed's values of the tunables common to all groups (ablation variants
are measured, never picked); ``--from-json`` picks from an earlier run's file.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avo_harness.tasks import get_task  # noqa: E402

SEED = ROOT / "candidates" / "attention" / "seed.py"
_COMMON = {"TMA": True, "PERSISTENT": False, "HEAVY_FIRST": True, "SPLIT_MASKED": True,
           "RESCALE_TAU": 0.0, "WARP_SPECIALIZE": False}


def _variant(tiles: str, **extra: Any) -> dict[str, Any]:
    """``"128x64/w8/s3"``: BLOCK_M x BLOCK_N, warps, stages; ``extra`` overrides the rest."""
    blocks, warps, stages = tiles.split("/")
    block_m, block_n = (int(b) for b in blocks.split("x"))
    return {**_COMMON, "BLOCK_M": block_m, "BLOCK_N": block_n, "num_warps": int(warps[1:]),
            "num_stages": int(stages[1:]), **extra}


VARIANTS: dict[str, dict[str, Any]] = {
    "ptr-128x64-s3": _variant("128x64/w8/s3", TMA=False),
    "ptr-128x64-s2": _variant("128x64/w8/s2", TMA=False),
    "ptr-128x64-s4": _variant("128x64/w8/s4", TMA=False),
    "ptr-128x64-w4": _variant("128x64/w4/s3", TMA=False),
    "ptr-64x64-w4": _variant("64x64/w4/s3", TMA=False),
    "ptr-128x128-s3": _variant("128x128/w8/s3", TMA=False),
    "ptr-256x64-w8": _variant("256x64/w8/s3", TMA=False),
    "tma-128x64-s4": _variant("128x64/w8/s4"),
    "tma-128x128-s3": _variant("128x128/w8/s3"),
    "tma-256x64-w8": _variant("256x64/w8/s3"),
    "ws-128x64-s2": _variant("128x64/w4/s2", WARP_SPECIALIZE=True),
    "ws-128x128-s2": _variant("128x128/w4/s2", WARP_SPECIALIZE=True),
    "ws-256x64-s2": _variant("256x64/w4/s2", WARP_SPECIALIZE=True),
    "ws-128x64-s2-pers": _variant("128x64/w4/s2", WARP_SPECIALIZE=True, PERSISTENT=True),
    "ws-128x64-s3-pers": _variant("128x64/w4/s3", WARP_SPECIALIZE=True, PERSISTENT=True),
    "ws-128x128-s2-pers": _variant("128x128/w4/s2", WARP_SPECIALIZE=True, PERSISTENT=True),
    "ws-256x64-s2-pers": _variant("256x64/w4/s2", WARP_SPECIALIZE=True, PERSISTENT=True),
    # Ablations of one move each (timed, never picked by --write-best).
    "ptr-128x64-s3-noheavy": _variant("128x64/w8/s3", TMA=False, HEAVY_FIRST=False),
    "ptr-128x64-s3-nosplit": _variant("128x64/w8/s3", TMA=False, SPLIT_MASKED=False),
    "ptr-128x64-s3-tau8": _variant("128x64/w8/s3", TMA=False, RESCALE_TAU=8.0),
    "tma-128x128-s3-noheavy": _variant("128x128/w8/s3", HEAVY_FIRST=False),
    "ws-128x128-s2-pers-tau8": _variant("128x128/w4/s2", WARP_SPECIALIZE=True, PERSISTENT=True,
                                        RESCALE_TAU=8.0),
}
# The seed's tunables of one (head dim, causal) group, from a variant's launch parameters.
_GROUP_TUNABLES = {"BLOCK_M": "BLOCK_M", "BLOCK_N": "BLOCK_N", "WARPS": "num_warps",
                   "STAGES": "num_stages", "TMA": "TMA", "WS": "WARP_SPECIALIZE",
                   "PERSISTENT": "PERSISTENT"}
_EDGE_BASE = {"B": 2, "Hq": 4, "Hkv": 2, "dtype": "bfloat16", "sm_scale": None,
              "layout": "bhnd", "spread": 1.0, "seed": 3}
_EDGE_CASES = [
    {**_EDGE_BASE, "Nq": 300, "Nk": 300, "D": 128, "causal": True},
    {**_EDGE_BASE, "Nq": 333, "Nk": 517, "D": 128, "causal": True, "layout": "bnhd"},
    {**_EDGE_BASE, "Nq": 517, "Nk": 333, "D": 64, "causal": True, "layout": "padded"},
    {**_EDGE_BASE, "Nq": 200, "Nk": 1000, "D": 96, "causal": False, "Hq": 8, "Hkv": 1},
    {**_EDGE_BASE, "Nq": 1000, "Nk": 77, "D": 32, "causal": False, "dtype": "float16"},
    {**_EDGE_BASE, "Nq": 257, "Nk": 257, "D": 64, "causal": False, "spread": 4.0},
    # Whole key blocks (the warp-specialized path): odd query counts, GQA, layouts.
    {**_EDGE_BASE, "Nq": 77, "Nk": 256, "D": 128, "causal": False, "Hq": 8, "layout": "bnhd"},
    {**_EDGE_BASE, "Nq": 300, "Nk": 512, "D": 64, "causal": False, "layout": "padded"},
    {**_EDGE_BASE, "Nq": 1, "Nk": 128, "D": 128, "causal": False, "dtype": "float16"},
    {**_EDGE_BASE, "Nq": 384, "Nk": 384, "D": 128, "causal": True, "Hq": 8, "Hkv": 2},
    {**_EDGE_BASE, "Nq": 100, "Nk": 640, "D": 64, "causal": True, "spread": 4.0},
    {**_EDGE_BASE, "Nq": 1024, "Nk": 1024, "D": 96, "causal": True, "dtype": "float16"},
]
# Rows compared with the float32 computation (bf16 output of O(1) values; the seed's own
# error there is a few 1e-3).
_CHECK_ROWS = 128
_TOLERANCE = 2e-2


def load_seed() -> Any:
    spec = importlib.util.spec_from_file_location("attention_seed", SEED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_rows(q: Any, k: Any, v: Any, causal: bool, out: Any) -> float:
    """Largest error of ``out`` on the checked rows against a float32 computation."""
    import torch

    b_all, hq, nq, d = q.shape
    group = hq // k.shape[1]
    nk = k.shape[2]
    rows = torch.cat([torch.arange(min(_CHECK_ROWS, nq)),
                      torch.arange(max(0, nq - _CHECK_ROWS), nq)]).to(q.device)
    worst = 0.0
    for b in {0, b_all - 1}:
        for h in {0, hq - 1}:
            qs = q[b, h, rows].float()
            ks, vs = k[b, h // group].float(), v[b, h // group].float()
            s = qs @ ks.T / math.sqrt(d)
            if causal:
                keys = torch.arange(nk, device=q.device)
                s = s.masked_fill(keys[None, :] > rows[:, None] + (nk - nq), float("-inf"))
            expected = torch.softmax(s, dim=-1) @ vs
            worst = max(worst, (out[b, h, rows].float() - expected).abs().max().item())
    return worst


def warm_and_check(name: str) -> dict[str, Any]:
    """Run in a subprocess: compile ``name`` for every configuration and check it."""
    import torch

    seed, task = load_seed(), get_task("attention")
    params = VARIANTS[name]
    results: dict[str, Any] = {}
    for config in task.bench_configs(cuda=True):
        call = task.make_inputs({**config.case, "seed": 7}, "cuda")
        q, k, v = call.args
        started = time.perf_counter()
        try:
            out = seed.launch(q, k, v, config.case["causal"], None, params)
            torch.cuda.synchronize()
        except Exception as exc:  # a variant that does not compile or launch is data
            results[config.name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        err = reference_rows(q, k, v, config.case["causal"], out)
        results[config.name] = {"ok": err <= _TOLERANCE, "max_abs_err": err,
                                "first_call_s": time.perf_counter() - started}
    edge_errors = {}
    for case in [*task.boundary_cases(large=True), *_EDGE_CASES]:
        call = task.make_inputs(case, "cuda")
        q, k, v = call.args
        try:
            out = seed.launch(q, k, v, case["causal"], case["sm_scale"], params)
            err = (out.double() - task.reference(call, torch.float64)).abs().max().item()
        except Exception as exc:  # reported, like a wrong result
            err = f"{type(exc).__name__}: {exc}"[:200]
        if not (isinstance(err, float) and err <= _TOLERANCE):
            edge_errors[json.dumps(case, sort_keys=True)] = err
    results["edge_cases"] = {"ok": not edge_errors, "failures": edge_errors}
    return results


def run_workers(names: list[str], jobs: int) -> dict[str, dict[str, Any]]:
    def one(name: str) -> tuple[str, dict[str, Any]]:
        proc = subprocess.run([sys.executable, __file__, "--worker", name], cwd=ROOT,
                              capture_output=True, text=True, timeout=400)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout)[-300:]
            return name, {"crashed": f"exit {proc.returncode}: {tail}"}
        return name, json.loads(lines[-1])

    with ThreadPoolExecutor(jobs) as pool:
        return dict(pool.map(one, names))


def time_ms(fn: Any) -> float:
    import triton

    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def time_sdpa(backend: str, q: Any, k: Any, v: Any, causal: bool) -> float | None:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kind = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[backend]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa = q.shape[1] != k.shape[1]
    try:
        with sdpa_kernel(kind):
            return time_ms(lambda: sdpa(q, k, v, is_causal=causal, enable_gqa=gqa))
    except RuntimeError:
        return None


def geomean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for variants.json")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=12, help="parallel warm-up subprocesses")
    parser.add_argument("--write-best", type=Path, help="write the picked candidate here")
    parser.add_argument("--from-json", type=Path,
                        help="pick from an earlier variants.json instead of measuring")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(warm_and_check(args.worker)))
        return 0
    if args.from_json:
        if args.write_best is None:
            parser.error("--from-json needs --write-best")
        print(write_best(json.loads(args.from_json.read_text()), args.write_best))
        return 0
    import torch
    import triton

    if args.out is None:
        parser.error("--out is required")
    started = time.perf_counter()
    checks = run_workers(args.variants, args.jobs)
    warm_s = time.perf_counter() - started
    print(f"warm-up and checks: {warm_s:.0f} s", flush=True)

    seed, task = load_seed(), get_task("attention")
    configs = task.bench_configs(cuda=True)
    rows = []
    for config in configs:
        q, k, v = task.make_inputs({**config.case, "seed": 1234}, "cuda").args
        causal = config.case["causal"]
        flops = task.flops(config.case)
        tflops: dict[str, float | None] = {}
        for backend in ("cudnn", "flash"):
            ms = time_sdpa(backend, q, k, v, causal)
            tflops[backend] = flops / ms / 1e9 if ms else None
        for name in args.variants:
            if not checks[name].get(config.name, {}).get("ok"):
                tflops[name] = None
                continue
            ms = time_ms(lambda: seed.launch(q, k, v, causal, None, VARIANTS[name]))
            tflops[name] = flops / ms / 1e9
        rows.append({"config": config.name, "params": config.case, "tflops": tflops})
        best = max(((t, n) for n, t in tflops.items() if t and n in VARIANTS), default=None)
        print(f"{config.name}: cudnn {tflops['cudnn']}, best {best}", flush=True)

    names = ["cudnn", "flash", *args.variants]
    means = {n: geomean([r["tflops"][n] for r in rows]) for n in names}
    complete = {n for n in args.variants if all(r["tflops"][n] for r in rows)}
    document = {
        "what": "seed launch variants: TFLOP/s (4*B*Hq*Nq*Nk*D, halved for causal) at the "
                "median of triton.testing.do_bench, L2 cleared before each repetition",
        "command": "PYTHONPATH=. python benchmarks/hopper_variants.py " + " ".join(sys.argv[1:]),
        "environment": {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                        "triton": triton.__version__, "cuda": torch.version.cuda,
                        "sm_count": torch.cuda.get_device_properties(0).multi_processor_count},
        "variants": VARIANTS, "checks": checks, "warm_s": warm_s, "rows": rows,
        "geomean_tflops": means, "best_by_group": rank_groups(seed, rows, args.variants),
    }
    if args.write_best:
        document["picked"] = write_best(document, args.write_best)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variants.json").write_text(json.dumps(document, indent=1))
    print_summary(document, complete)
    return 0


def rank_groups(seed: Any, rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Per tunable group of the seed (``seed.group``): each variant's geomean over the
    group's configurations where it ran them all, and the fastest."""
    members: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        case = row["params"]
        members.setdefault(seed.group(case["D"], case["causal"], case["Nk"]), []).append(row)
    ranked = {}
    for key, group in members.items():
        scores = {n: geomean([r["tflops"][n] for r in group]) for n in names
                  if all(r["tflops"].get(n) for r in group)}
        best = max(scores, key=lambda n: scores[n]) if scores else None
        ranked[key] = {"configs": [r["config"] for r in group], "best": best,
                       "geomean": scores.get(best) if best else None,
                       "cudnn_geomean": geomean([r["tflops"]["cudnn"] for r in group]),
                       "all": scores}
    return ranked


def write_best(doc: dict[str, Any], path: Path) -> dict[str, str]:
    """The seed with each group's fastest eligible variant as its tunables (see above)."""
    from avo_harness.tunables import read_space, write_values

    seed, source = load_seed(), SEED.read_text()
    space = read_space(source)
    values = dict(space.values)
    variants = doc["variants"]
    shared = [name for name in _COMMON if name in values]
    picks: dict[str, str] = {}
    for key, group in rank_groups(seed, doc["rows"], list(variants)).items():
        eligible = {name: score for name, score in group["all"].items()
                    if doc["checks"][name]["edge_cases"]["ok"]
                    and all(variants[name][s] == values[s] for s in shared)}
        if not eligible:
            continue
        name = max(eligible, key=lambda n: eligible[n])
        for tunable, param in _GROUP_TUNABLES.items():
            if f"{key}_{tunable}" in values:
                values[f"{key}_{tunable}"] = variants[name][param]
        picks[key] = name
    if not space.allows(values):
        raise SystemExit(f"hopper_variants: the picks {picks} break the seed's CONSTRAINTS")
    summary = "".join(f"    {key}: {name}\n" for key, name in picks.items())
    text = write_values(source, values).replace(
        '"""Seed candidate: a FlashAttention-2 style forward kernel in Triton, with Hopper paths.',
        '"""Hopper-tuned candidate: the seed with, per tunable group, the launch variant that\n'
        'was fastest on an H100 (benchmarks/hopper_variants.py --write-best):\n\n'
        f'{summary}\nThe seed\'s own description follows: a FlashAttention-2 style forward\n'
        'kernel in Triton, with Hopper paths.', 1)
    path.write_text(text)
    return picks


def print_summary(doc: dict[str, Any], complete: set[str]) -> None:
    means = doc["geomean_tflops"]
    cudnn = means["cudnn"]
    for name, checks in doc["checks"].items():
        failed = {c: r for c, r in checks.items() if not r.get("ok")} if "crashed" not in checks \
            else {"all": checks["crashed"]}
        if failed:
            first = next(iter(failed.items()))
            print(f"NOT TIMED {name}: {len(failed)} configs, e.g. {first[0]}: "
                  f"{str(first[1])[:160]}")
    print(f"{'variant':26}{'geomean':>9}{'/cudnn':>8}   (over all configs)")
    for name in sorted(means, key=lambda n: -(means[n] or 0)):
        if means[name]:
            mark = "" if name in complete or name in ("cudnn", "flash") else "  (partial)"
            print(f"{name:26}{means[name]:9.1f}{means[name] / cudnn:8.3f}{mark}")
    for key, group in doc["best_by_group"].items():
        if group["best"]:
            print(f"best {key:14} {group['best']:26}{group['geomean']:7.1f} "
                  f"vs cudnn {group['cudnn_geomean']:7.1f} "
                  f"({group['geomean'] / group['cudnn_geomean']:.3f})")


if __name__ == "__main__":
    raise SystemExit(main())
