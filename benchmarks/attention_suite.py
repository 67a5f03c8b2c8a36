"""The attention benchmark suite: our candidates next to cuDNN and FlashAttention-4, one run.

    PYTHONPATH=. python benchmarks/attention_suite.py --out benchmarks/results/attention-h100.json

1. Runs the harness on the candidates (``pytest candidates/attention --avo-report``):
   the full correctness check on this GPU, then every suite configuration timed
   and its output verified, exactly as ``pytest candidates/attention`` does.
2. Times torch SDPA with the cuDNN, flash and memory-efficient backends, and FlashAttention-4
   (``flash_attn.cute``, the task's ``extra_baselines``) where it imports, on the same
   configurations and the same inputs with the same clock (``avo_harness.judge.timer.
   time_in_process``: CUDA events, inputs refreshed and L2 flushed before each round), in the
   same session. GQA configurations pass ``enable_gqa=True``; an SDPA backend that refuses it
   gets k and v expanded to Hq heads beforehand (outside the timed region), and the table
   marks that with ``*``. FA4 takes GQA as it is; where it is absent, the table says why.
3. Writes one JSON document (environment, per-config TFLOP/s, ratios, geometric means) and
   prints the table: each candidate against cuDNN, FA4 and ``best``, the faster of the two
   per configuration (``benchmarks/fa4_install.sh``: FA4 on a machine without network).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from avo_harness.judge.timer import time_in_process
from avo_harness.report import write_json_atomically
from avo_harness.tasks import BenchConfig, Call, get_task
from avo_harness.tasks.attention import FA4_NAME, Attention

ROOT = Path(__file__).resolve().parent.parent

SDPA_BACKENDS = ("cudnn", "flash", "efficient")
#: The baselines a candidate is held to; ``best`` is the faster of them per configuration.
RIVALS = ("cudnn", "fa4")
#: Every baseline column, in the tables' order.
BASELINES = ("cudnn", "fa4", "best", "flash", "efficient")
#: What each candidate's ratios are taken to, per configuration and in the geomeans.
RATIO_BASES = ("cudnn", "fa4", "best")
LABELS = {"cudnn": "cuDNN", "fa4": "FA4"}
#: The packages behind the FA4 column, whose versions the JSON records.
FA4_PACKAGES = ("flash-attn-4", "nvidia-cutlass-dsl", "quack-kernels", "apache-tvm-ffi")
#: The seed of the inputs every baseline is timed on.
SEED = 1234


def run_harness(paths: list[str], report: Path, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", *paths, "--avo-report", str(report), "-q",
           "-p", "no:cacheprovider", *extra]
    print("$", " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.call(cmd, cwd=ROOT, env=env)


def time_sdpa(backend: str, call: Call) -> tuple[float | None, bool]:
    """Median seconds of one SDPA backend on ``call``, and whether kv had to be expanded."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kind = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
    q, k, v = call.args
    sdpa = torch.nn.functional.scaled_dot_product_attention
    # SDPA's causal mask is top-left aligned; the suite has Nq == Nk, where both agree.
    assert q.shape[2] == k.shape[2]
    causal = bool(call.kwargs["causal"])
    for expanded in (False, True):
        kk, vv = k, v
        if expanded:
            if q.shape[1] == k.shape[1]:
                return None, False
            group = q.shape[1] // k.shape[1]
            kk, vv = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        gqa = q.shape[1] != kk.shape[1]

        def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return sdpa(q, k, v, is_causal=causal, enable_gqa=gqa)

        # The harness times its own baseline this way (collector.calibration.baseline): one input
        # set, refreshed before each round.
        try:
            with sdpa_kernel(kind):
                times = time_in_process(lambda args: run(*args), (q, kk, vv), cuda=True)
            return statistics.median(times), expanded
        except RuntimeError:
            continue
    return None, False


def time_library(forward: Callable[[Call], torch.Tensor], call: Call) -> float:
    """Median seconds of a library's forward on ``call`` (the harness's way, as above)."""
    times = time_in_process(lambda args: forward(Call(args, call.kwargs)), call.args, cuda=True)
    return statistics.median(times)


def one_line(exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()
    return f"{type(exc).__name__}{': ' + detail[0] if detail else ''}"


def geomean(values: list[float | None]) -> float | None:
    present = [v for v in values if v]
    return math.exp(sum(map(math.log, present)) / len(present)) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def complete_row(row: dict[str, Any], candidates: list[str]) -> None:
    """Add ``best`` (the faster of cuDNN and FA4 here; the one timed where the other is
    absent), which of them it is, and each candidate's ratios to cuDNN, FA4 and best."""
    t = row["tflops"]
    timed = [name for name in RIVALS if t.get(name)]
    best_of = max(timed, key=lambda name: t[name]) if timed else None
    t["best"] = t[best_of] if best_of else None
    row["best_of"] = best_of
    row["ratios"] = {n: {base: ratio(t[n], t[base]) for base in RATIO_BASES}
                     for n in candidates}


def geomeans(rows: list[dict[str, Any]], candidates: list[str]) -> dict[str, Any]:
    """Geometric means of the columns, and of each candidate's per-configuration ratios.

    A baseline's mean covers the configurations where it was timed; a candidate's ratio to
    it covers those too, and is None if the candidate lacks one of them (a failed
    configuration has no honest overall figure). ``flash`` keeps the key of older reports.
    """
    def mean_ratio(name: str, base: str) -> float | None:
        pairs = [(r["tflops"][name], r["tflops"][base]) for r in rows if r["tflops"][base]]
        if not pairs or not all(a for a, _ in pairs):
            return None
        return geomean([a / b for a, b in pairs])

    return {
        "geomean_tflops": {n: geomean([r["tflops"][n] for r in rows])
                           for n in (*BASELINES, *candidates)},
        **{f"geomean_ratio_to_{base}": {n: mean_ratio(n, base) for n in candidates}
           for base in (*RATIO_BASES, "flash")},
    }


def absences(rows: list[dict[str, Any]], name: str) -> list[str]:
    """One line per reason ``name`` is absent, with the configurations it holds for."""
    by_reason: dict[str, list[str]] = {}
    for row in rows:
        reason = row.get("absent", {}).get(name)
        if reason:
            by_reason.setdefault(reason, []).append(row["config"])
    label = LABELS.get(name, name)
    return [f"{label} absent on {'all ' if len(configs) == len(rows) else ''}"
            f"{len(configs)} of {len(rows)} configurations"
            f"{'' if len(configs) == len(rows) else ' (' + ', '.join(configs) + ')'}: {reason}"
            for reason, configs in by_reason.items()]


def footnotes(rows: list[dict[str, Any]]) -> list[str]:
    """Why FA4 is absent where it is, and how far its output is from torch SDPA's."""
    diffs = [r["fa4_max_abs_diff_vs_sdpa"] for r in rows if "fa4_max_abs_diff_vs_sdpa" in r]
    agreement = [(f"FA4's output against torch SDPA's on the same inputs: max |diff| "
                  f"{max(diffs):.3g} over {len(diffs)} configurations")] if diffs else []
    return [*absences(rows, "fa4"), *agreement]


def fa4_versions() -> dict[str, str]:
    versions = {}
    for package in FA4_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def measure_row(task: Attention, config: BenchConfig,
                candidates: dict[str, Any]) -> dict[str, Any]:
    """Every baseline on one configuration's inputs, and the candidates' harness figures."""
    flops = task.flops(config.case)
    call = task.make_inputs({**config.case, "seed": SEED}, "cuda")
    row: dict[str, Any] = {"config": config.name, "params": config.case, "tflops": {},
                           "expanded_kv": []}
    for backend in SDPA_BACKENDS:
        median, expanded = time_sdpa(backend, call)
        row["tflops"][backend] = flops / median / 1e12 if median else None
        if expanded:
            row["expanded_kv"].append(backend)
    row["tflops"]["fa4"] = None
    fa4 = task.extra_baselines(config.case, "cuda")[FA4_NAME]
    if isinstance(fa4, str):
        row["absent"] = {"fa4": fa4}
    else:
        try:
            # Its output against torch SDPA's on the same inputs: a wrong call would not
            # pass for a fast one.
            row["fa4_max_abs_diff_vs_sdpa"] = \
                (fa4(call).float() - task.baseline(call).float()).abs().max().item()
            row["tflops"]["fa4"] = flops / time_library(fa4, call) / 1e12
        except Exception as exc:  # the library's own failure on this shape: the column says it
            row["absent"] = {"fa4": f"FA4 failed here ({one_line(exc)})"}
    for name, cand in candidates.items():
        bench = cand["benchmarks"].get(config.name, {})
        ok = bench.get("outcome") == "passed" and cand["correctness"]["outcome"] == "passed"
        row["tflops"][name] = bench.get("tflops") if ok else None
    complete_row(row, list(candidates))
    return row


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
    assert isinstance(task, Attention)
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        status = run_harness(args.candidates, report_path, args.pytest_args.split())
        report = json.loads(report_path.read_text())
    candidates = {Path(c["path"]).stem: c for c in report["candidates"].values()}
    clash = set(candidates) & set(BASELINES)
    if clash:
        parser.error(f"a candidate is named like a baseline column: {', '.join(sorted(clash))}")

    rows = [measure_row(task, config, candidates) for config in task.bench_configs(cuda=True)]
    document = {
        "what": "attention forward TFLOP/s (4*B*Hq*Nq*Nk*D, halved for causal) at the median "
                "of CUDA-event times, L2 flushed before each round; best: the faster of cuDNN "
                "and FA4 per configuration",
        "command": "PYTHONPATH=. python benchmarks/attention_suite.py " + " ".join(sys.argv[1:]),
        "environment": report["environment"] | {"sm_count": torch.cuda.get_device_properties(
            0).multi_processor_count},
        "fa4": {"name": FA4_NAME, "versions": fa4_versions()},
        "harness_exit_status": status,
        "correctness": {n: c["correctness"] for n, c in candidates.items()},
        "rows": rows,
        **geomeans(rows, list(candidates)),
    }
    write_json_atomically(args.out, document)
    print(render_table(document))
    print()
    print(render_markdown(document))
    return status


def _names(document: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The baseline columns and the candidates of a document, in its rows' order."""
    ours = list(document["correctness"])
    return [*BASELINES, *ours], ours


def render_table(document: dict[str, Any]) -> str:
    """The aligned table, for the terminal (``*``: k and v expanded for that backend)."""
    names, ours = _names(document)
    rows = document["rows"]

    def cell(v: float | None) -> str:
        return f"{v:7.1f}" if v else "      -"

    def head_cell(n: str) -> str:
        return f"{LABELS.get(n, n)[:9]:>10}"

    lines = [f"{'config':24}" + "".join(head_cell(n) for n in names)
             + "".join(f"{n[:7] + '/' + LABELS.get(b, b):>14}"
                       for n in ours for b in RATIO_BASES)]
    for row in rows:
        t = row["tflops"]
        marks = {n: "*" for n in row["expanded_kv"]}
        if row["best_of"]:
            marks["best"] = row["best_of"][0].upper()
        line = f"{row['config']:24}" + "".join(
            f"{cell(t[n])}{marks.get(n, ' '):<3}" for n in names)
        for n in ours:
            for base in RATIO_BASES:
                r = row["ratios"][n][base]
                line += f"{r:14.3f}" if r else f"{'-':>14}"
        lines.append(line)
    means = document["geomean_tflops"]
    line = f"{'geomean':24}" + "".join(f"{cell(means[n])}   " for n in names)
    for n in ours:
        for base in RATIO_BASES:
            r = document[f"geomean_ratio_to_{base}"][n]
            line += f"{r:14.3f}" if r else f"{'-':>14}"
    lines.append(line)
    lines.append("best: C cuDNN, F FA4 was the faster")
    return "\n".join([*lines, *footnotes(rows)])


def render_markdown(document: dict[str, Any]) -> str:
    """The same table as README.md shows it (``*``: k and v expanded for that backend)."""
    names, ours = _names(document)
    rows = document["rows"]
    ratios = [(n, base) for n in ours for base in RATIO_BASES]
    lines = ["| config | " + " | ".join(LABELS.get(n, n) for n in names) + " | "
             + " | ".join(f"{n} / {LABELS.get(b, b)}" for n, b in ratios) + " |",
             "| --- |" + " ---: |" * (len(names) + len(ratios))]

    def number(v: float | None, digits: int) -> str:
        return f"{v:.{digits}f}" if v else "-"

    for row in rows:
        t = row["tflops"]
        cells = [number(t[n], 1) + ("*" if n in row["expanded_kv"] else "") for n in names]
        if row["best_of"]:
            cells[names.index("best")] += f" ({LABELS[row['best_of']]})"
        cells += [number(row["ratios"][n][b], 3) for n, b in ratios]
        lines.append(f"| {row['config']} | " + " | ".join(cells) + " |")
    means = document["geomean_tflops"]
    cells = [f"**{number(means[n], 1)}**" for n in names]
    cells += [f"**{number(document[f'geomean_ratio_to_{b}'][n], 3)}**" for n, b in ratios]
    lines.append("| **geomean** | " + " | ".join(cells) + " |")
    return "\n".join([*lines, *("\n" + line for line in footnotes(rows))])


if __name__ == "__main__":
    raise SystemExit(main())
