"""The attention benchmark suite: our candidates next to torch SDPA's backends, one run.

    PYTHONPATH=. python benchmarks/attention_suite.py --out benchmarks/results/attention-h100.json

1. Runs the harness on the candidates (``pytest candidates/attention --avo-report``):
   the full correctness check on this GPU, then every suite configuration timed
   and its output verified, exactly as ``pytest candidates/attention`` does.
2. Times torch SDPA with the cuDNN, flash and memory-efficient backends on the same
   configurations with the same clock (``avo_harness.judge.timer.time_in_process``: CUDA events,
   inputs refreshed and L2 flushed before each round), in the same session. GQA configurations pass
   ``enable_gqa=True``; a backend that refuses it gets k and v expanded to Hq heads
   beforehand (outside the timed region), and the table marks that with ``*``.
3. Writes one JSON document (environment, per-config TFLOP/s, ratios, geometric
   means) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avo_harness.report import write_json_atomically  # noqa: E402
from avo_harness.tasks import get_task  # noqa: E402
from avo_harness.judge.timer import time_in_process  # noqa: E402

BACKENDS = ("cudnn", "flash", "efficient")


def run_harness(paths: list[str], report: Path, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", *paths, "--avo-report", str(report), "-q",
           "-p", "no:cacheprovider", *extra]
    print("$", " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.call(cmd, cwd=ROOT, env=env)


def time_sdpa(backend: str, case: dict[str, Any]) -> tuple[float | None, bool]:
    """Median seconds of one SDPA backend on ``case``, and whether kv had to be expanded."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kind = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
    call = get_task("attention").make_inputs({**case, "seed": 1234}, "cuda")
    q, k, v = call.args
    sdpa = torch.nn.functional.scaled_dot_product_attention
    # SDPA's causal mask is top-left aligned; the suite has Nq == Nk, where both agree.
    assert q.shape[2] == k.shape[2]
    for expanded in (False, True):
        kk, vv = k, v
        if expanded:
            if q.shape[1] == k.shape[1]:
                return None, False
            group = q.shape[1] // k.shape[1]
            kk, vv = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        gqa = q.shape[1] != kk.shape[1]
        causal = case["causal"]

        def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return sdpa(q, k, v, is_causal=causal, enable_gqa=gqa)

        # The harness times its own baseline this way (collector._baseline): one input
        # set, refreshed before each round.
        try:
            with sdpa_kernel(kind):
                times = time_in_process(lambda args: run(*args), (q, kk, vv), cuda=True)
            return sorted(times)[len(times) // 2], expanded
        except RuntimeError:
            continue
    return None, False


def geomean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to write the JSON (required)")
    parser.add_argument("--candidates", nargs="*", default=["candidates/attention"])
    parser.add_argument("--pytest-args", default="", help="extra arguments for the harness run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("attention_suite: needs a CUDA GPU (the suite's numbers are device times)")
        return 2
    if args.out is None:
        parser.error("--out is required")
    task = get_task("attention")
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        status = run_harness(args.candidates, report_path, args.pytest_args.split())
        report = json.loads(report_path.read_text())
    candidates = {Path(c["path"]).stem: c for c in report["candidates"].values()}

    rows = []
    for config in task.bench_configs(cuda=True):
        flops = task.flops(config.case)
        row: dict[str, Any] = {"config": config.name, "params": config.case, "tflops": {},
                               "expanded_kv": []}
        for backend in BACKENDS:
            median, expanded = time_sdpa(backend, config.case)
            row["tflops"][backend] = flops / median / 1e12 if median else None
            if expanded:
                row["expanded_kv"].append(backend)
        for name, cand in candidates.items():
            bench = cand["benchmarks"].get(config.name, {})
            ok = bench.get("outcome") == "passed" and cand["correctness"]["outcome"] == "passed"
            row["tflops"][name] = bench.get("tflops") if ok else None
        rows.append(row)

    names = [*BACKENDS, *candidates]
    means = {n: geomean([r["tflops"][n] for r in rows]) for n in names}
    document = {
        "what": "attention forward TFLOP/s (4*B*Hq*Nq*Nk*D, halved for causal) at the median "
                "of CUDA-event times, L2 flushed before each round",
        "command": "PYTHONPATH=. python benchmarks/attention_suite.py " + " ".join(sys.argv[1:]),
        "environment": report["environment"] | {"sm_count": torch.cuda.get_device_properties(
            0).multi_processor_count},
        "harness_exit_status": status,
        "correctness": {n: c["correctness"] for n, c in candidates.items()},
        "rows": rows,
        "geomean_tflops": means,
        "geomean_ratio_to_cudnn": {n: (means[n] / means["cudnn"]) if means[n] and means["cudnn"]
                                   else None for n in candidates},
        "geomean_ratio_to_flash": {n: (means[n] / means["flash"]) if means[n] and means["flash"]
                                   else None for n in candidates},
    }
    write_json_atomically(args.out, document)
    print_table(rows, names, means, list(candidates))
    print_markdown(rows, names, means, list(candidates))
    return status


def print_table(rows: list[dict[str, Any]], names: list[str], means: dict[str, Any],
                ours: list[str]) -> None:
    def cell(v: float | None) -> str:
        return f"{v:7.1f}" if v else "      -"

    head = f"{'config':24}" + "".join(f"{n[:9]:>10}" for n in names)
    head += "".join(f"{n[:7] + '/cuDNN':>14}{n[:7] + '/flash':>14}" for n in ours)
    print(head)
    for row in rows:
        t = row["tflops"]
        line = f"{row['config']:24}" + "".join(
            f"{cell(t[n])}{'*' if n in row['expanded_kv'] else ' ':<3}" for n in names)
        for n in ours:
            for base in ("cudnn", "flash"):
                r = t[n] / t[base] if t[n] and t[base] else None
                line += f"{r:14.3f}" if r else f"{'-':>14}"
        print(line)
    print(f"{'geomean':24}" + "".join(f"{cell(means[n])}   " for n in names))


def print_markdown(rows: list[dict[str, Any]], names: list[str], means: dict[str, Any],
                   ours: list[str]) -> None:
    """The same table as README.md shows it (``*``: k and v expanded for that backend)."""
    ratios = [(n, base) for n in ours for base in ("cudnn", "flash")]
    print("\n| config | " + " | ".join(names) + " | "
          + " | ".join(f"{n} / {b}" for n, b in ratios) + " |")
    print("| --- |" + " ---: |" * (len(names) + len(ratios)))

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.3f}" if a and b else "-"

    for row in rows:
        t = row["tflops"]
        cells = [f"{t[n]:.1f}{'*' if n in row['expanded_kv'] else ''}" if t[n] else "-"
                 for n in names]
        cells += [ratio(t[n], t[b]) for n, b in ratios]
        print(f"| {row['config']} | " + " | ".join(cells) + " |")
    cells = [f"**{means[n]:.1f}**" if means[n] else "-" for n in names]
    cells += [f"**{ratio(means[n], means[b])}**" for n, b in ratios]
    print("| **geomean** | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
