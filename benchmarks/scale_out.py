"""Candidates judged per hour: the serial loop against the scheduler with overlap, and the
paired commit rule's spread on one kernel timed against itself.

    PYTHONPATH=. python benchmarks/scale_out.py --device cuda --task rmsnorm --budget 200 \
        --out benchmarks/results/scale-out-h200.json

Each mode is one ``pytest --avo-evolve`` run, as a user starts it, in a fresh project holding
the task's starting candidates: the built-in operator with the same seed, the same time
budget, no paired timing (it measures throughput), a store of its own (so no mode inherits
another's kernels or calibration). ``serial`` is ``--avo-workers 1``; ``overlap`` is the
default on one GPU (two slots sharing the GPU's lock: one compiles and checks while the other
is timed). The rate counts evaluations the run judged (cut by the time budget: not judged)
over the run's wall time. Then ``--paired-rounds`` rounds of the task's first seed against
itself (``evolve.paired``): a kernel is a tie with itself, so the interval's width is the
noise the commit rule must see through.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JUDGED = ("passed", "failed", "cut-slower")


def search(task: str, device: str, budget_s: float, workers: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="avo-scale-") as tmp:
        project = Path(tmp)
        shutil.copytree(ROOT / "candidates" / task, project / "candidates" / task)
        (project / "pytest.ini").write_text("[pytest]\n")
        argv = [sys.executable, "-m", "pytest", "-p", "avo_harness.plugin", "--avo-evolve",
                "--avo-task", task, "--avo-device", device, "--avo-operator", "builtin",
                "--avo-seed", str(seed), "--avo-generations", "10000", "--avo-time-budget",
                str(budget_s), "--avo-workers", workers, "--avo-paired-rounds", "0"]
        began = time.monotonic()
        run = subprocess.run(argv, cwd=project, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.monotonic() - began
        db = sqlite3.connect(project / ".avo" / "lineage.sqlite")
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute(
            "SELECT name, status, worker, eval_started_at, evaluated_at, eval_s, geomean "
            "FROM candidates ORDER BY id")]
        db.close()
    judged = [r for r in rows if r["status"] in JUDGED]
    return {"workers": workers, "exit": run.returncode, "wall_s": round(wall, 1),
            "judged": len(judged), "per_hour": round(len(judged) / wall * 3600, 1),
            "best_geomean": max((r["geomean"] or 0.0 for r in judged), default=0.0),
            "rows": rows, "tail": run.stdout.strip().splitlines()[-1:]}


def spread(task: str, device: str, rounds: int) -> dict[str, Any]:
    from avo_harness.evolve.evaluate import EvalSettings
    from avo_harness.evolve.paired import compare

    seeds = sorted(p for p in (ROOT / "candidates" / task).glob("*.py")
                   if not p.name.startswith("_"))
    with tempfile.TemporaryDirectory(prefix="avo-spread-") as tmp:
        folder = Path(tmp, "candidates", task)
        folder.mkdir(parents=True)
        for helper in (ROOT / "candidates" / task).glob("_*.py"):  # what the seeds import
            shutil.copy(helper, folder / helper.name)
        a, b = folder / "a.py", folder / "b.py"
        a.write_text(seeds[0].read_text())
        b.write_text(seeds[0].read_text())
        settings = EvalSettings(device, 0, 300.0, 600.0, 8.0, Path(tmp))
        result = compare(a, b, settings, rounds, gpu_lock=None, time_left_s=None)
    return {"candidate": seeds[0].name, **{k: v for k, v in result.to_json().items()
                                           if k != "measurement"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="rmsnorm")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds per mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paired-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result: dict[str, Any] = {"task": args.task, "device": args.device,
                              "budget_s": args.budget, "seed": args.seed, "modes": {}}
    for mode, workers in (("serial", "1"), ("overlap", "auto")):
        result["modes"][mode] = search(args.task, args.device, args.budget, workers, args.seed)
        summary = {k: v for k, v in result["modes"][mode].items() if k != "rows"}
        print(json.dumps({"mode": mode, **summary}), flush=True)
        args.out.write_text(json.dumps(result, indent=1))
    serial, overlap = (result["modes"][m]["per_hour"] for m in ("serial", "overlap"))
    result["speedup"] = round(overlap / serial, 3) if serial else None
    print(json.dumps({"speedup": result["speedup"]}), flush=True)
    if args.paired_rounds:
        result["paired_spread"] = spread(args.task, args.device, args.paired_rounds)
        print(json.dumps(result["paired_spread"]), flush=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
