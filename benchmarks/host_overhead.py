"""How much of a short attention call is the host's: launch preparation that the harness's
clock (which synchronises before each round) sees and ``do_bench`` (back-to-back calls) hides.

    PYTHONPATH=. python benchmarks/host_overhead.py --out benchmarks/results/host-overhead-h200.json

For each candidate, on the configurations given (the suite's names): ``do_bench``'s median;
the median of a synchronised call (sync, call, sync: what a round sees); the median host time
to enqueue one call (no sync); and the cProfile of 50 enqueues, top functions by own time.
"""
from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import triton.testing

from avo_harness.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path) -> Any:
    """The candidate at ``path``, its helpers importable as the worker makes them (its
    folder appended to the path)."""
    if str(path.resolve().parent) not in sys.path:
        sys.path.append(str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(fn: Any, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any],
            flops: float) -> dict[str, Any]:
    call = lambda: fn(*args, **kwargs)  # noqa: E731
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    bench_ms = triton.testing.do_bench(call, warmup=25, rep=200, return_mode="median")
    synced, enqueue = [], []
    for _ in range(50):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        synced.append(time.perf_counter() - t0)
        enqueue.append(t1 - t0)
    profile = cProfile.Profile()
    torch.cuda.synchronize()
    profile.enable()
    for _ in range(50):
        call()
    profile.disable()
    torch.cuda.synchronize()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
    return {"do_bench_ms": bench_ms, "do_bench_tflops": flops / bench_ms / 1e9,
            "synced_ms": statistics.median(synced) * 1e3,
            "synced_tflops": flops / statistics.median(synced) / 1e12,
            "enqueue_ms": statistics.median(enqueue) * 1e3,
            "profile": text.getvalue().splitlines()[:45]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", type=Path,
                        default=[ROOT / "candidates/attention/seed.py",
                                 ROOT / "candidates/attention/gluon_fa3.py"])
    parser.add_argument("--configs", nargs="+",
                        default=["d128-n1024", "d128-n1024-causal", "d128-n16384"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    task = get_task("attention")
    benches = {b.name: b for b in task.bench_configs(cuda=True)}
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "rows": []}
    for path in args.candidates:
        module = load(path)
        for name in args.configs:
            case = benches[name].case
            call = task.make_inputs({**case, "seed": 1}, "cuda")
            row = {"candidate": path.name, "config": name,
                   **measure(module.attention, tuple(call.args), dict(call.kwargs),
                             task.flops(case))}
            print(json.dumps({k: v for k, v in row.items() if k != "profile"}), flush=True)
            result["rows"].append(row)
            args.out.write_text(json.dumps(result, indent=1))
    for row in result["rows"]:
        print(f"--- {row['candidate']} {row['config']}")
        print("\n".join(row["profile"][:30]))


if __name__ == "__main__":
    main()
