"""Where the time goes: Nsight Compute counters of our kernel and cuDNN's, same inputs.

    PYTHONPATH=. python benchmarks/hopper_profile.py --out DIR [--candidate PATH]
        [--configs d128-n4096 ...]

For each suite configuration it runs ``ncu`` twice, on one call of the candidate's
``attention`` and on one call of torch SDPA's cuDNN backend (each after warm-up
calls, inside a cudaProfilerStart/Stop region), collecting the SpeedOfLight,
ComputeWorkloadAnalysis, Occupancy and WarpStateStats sections with clocks left as
they are (``--clock-control none``). Writes ``DIR/profile.json`` (the kept metrics of
every kernel in the region, rewritten after each run) and prints, per kernel, its
duration, the tensor-pipe and MUFU (exp2) pipe utilization, issue-slot use,
occupancy and the three largest warp stall reasons.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avo_harness.tasks import get_task  # noqa: E402

_SECTIONS = ("SpeedOfLight", "ComputeWorkloadAnalysis", "Occupancy", "WarpStateStats")
# Metric-name fragments worth keeping from ncu's raw page.
_KEEP = ("gpu__time_duration", "throughput.avg.pct_of_peak", "pipe_tensor", "pipe_xu",
         "pipe_fma", "pipe_alu", "issue_active", "warps_active", "issue_stalled",
         "registers_per_thread", "shared_mem_per_block", "sm__cycles_elapsed.avg.per_second")


def run_target(target: str, config_name: str, candidate: str) -> None:
    """Run in the profiled process: warm up, then one call inside the profiler region."""
    import torch

    task = get_task("attention")
    config = next(c for c in task.bench_configs(cuda=True) if c.name == config_name)
    q, k, v = task.make_inputs({**config.case, "seed": 5}, "cuda").args
    causal = config.case["causal"]
    if target == "cudnn":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def call() -> Any:
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1])
    else:
        spec = importlib.util.spec_from_file_location("profiled_candidate", ROOT / candidate)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def call() -> Any:
            return module.attention(q, k, v, causal=causal)
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def profile(ncu: str, target: str, config: str, candidate: str) -> list[dict[str, Any]]:
    """Every kernel of the profiled region with its kept metrics (ncu's raw page)."""
    cmd = [ncu, "--profile-from-start", "off", "--clock-control", "none", "--csv",
           "--page", "raw", *[a for s in _SECTIONS for a in ("--section", s)],
           sys.executable, __file__, "--target", target, "--config", config,
           "--candidate", candidate]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('"')]
    if not lines:
        return [{"error": (proc.stderr or proc.stdout)[-500:]}]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, units, data = rows[0], rows[1], rows[2:]
    kernels = []
    for row in data:
        entry: dict[str, Any] = {"kernel": row[header.index("Kernel Name")][:120]}
        for name, unit, value in zip(header, units, row):
            if any(key in name for key in _KEEP):
                entry[name] = {"unit": unit, "value": value}
        kernels.append(entry)
    return kernels


def _number(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def _value(entry: dict[str, Any], fragment: str) -> str:
    hits = [m["value"] for n, m in entry.items() if fragment in n and isinstance(m, dict)]
    return hits[0] if hits else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--candidate", default="candidates/attention/hopper_best.py")
    parser.add_argument("--configs", nargs="*",
                        default=["d64-n4096", "d128-n4096", "d128-n4096-causal"])
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.target:
        run_target(args.target, args.config, args.candidate)
        return 0
    if args.out is None:
        parser.error("--out is required")
    ncu = shutil.which("ncu") or next(
        (str(p) for p in sorted(Path("/opt/nvidia").glob("nsight-compute/*/ncu"))), None)
    if ncu is None:
        print("hopper_profile: ncu not found")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    for config in args.configs:
        for target in ("candidate", "cudnn"):
            results[f"{config}/{target}"] = profile(ncu, target, config, args.candidate)
            # Rewritten after every run, so a run cut short keeps what it measured.
            (args.out / "profile.json").write_text(json.dumps(
                {"candidate": args.candidate, "ncu": ncu, "sections": _SECTIONS,
                 "kernels": results}, indent=1))
    for key, kernels in results.items():
        for entry in kernels:
            if "error" in entry:
                print(f"{key}: ncu failed: {entry['error'][-200:]}")
                continue
            stalls = sorted(((_number(m["value"]), n.split("issue_stalled_")[-1].split(".")[0])
                             for n, m in entry.items()
                             if "issue_stalled" in n and n.endswith(".ratio")),
                            reverse=True)[:3]
            print(f"{key:32} {entry['kernel'][:40]:40} dur {_value(entry, 'gpu__time_duration')}"
                  f" tensor {_value(entry, 'pipe_tensor_cycles_active.avg.pct')}"
                  f" xu {_value(entry, 'inst_executed_pipe_xu.avg.pct')}"
                  f" issue {_value(entry, 'issue_active.avg.pct')}"
                  f" warps {_value(entry, 'warps_active.avg.pct')}"
                  f" stalls {[(s, round(v, 2)) for v, s in stalls]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
