"""What one evaluation costs, phase by phase, as the search pays it.

    PYTHONPATH=. python benchmarks/eval_cost.py --device cuda \
        --out benchmarks/results/eval-cost-h200.json

Each evaluation runs through ``evolve.evaluate`` (a fresh pytest process, the sandboxed
child, every check), sharing one ``--avo-calibration`` file as a search run's evaluations
do. In order: the seed with no kernels kept (the first evaluation of a run, which
also measures the machine), the seed again (a warm re-evaluation: its kernels kept),
then ``--mutations`` fresh mutations of the seed, each one tunable moved to another allowed
choice (new source, so cold). Written: wall seconds, the report's ``phases_s`` and
``compile_ahead``, and the fitness of each.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from avo_harness.evolve.evaluate import EvalSettings, evaluate
from avo_harness.tunables import read_space, write_values

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ROOT / "candidates" / "attention"


def mutations(source: str, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """``count`` distinct one-tunable moves of ``source`` that its constraints allow."""
    space = read_space(source)
    found: dict[str, str] = {}
    while len(found) < count:
        name = rng.choice(sorted(space.choices))
        choice = rng.choice([c for c in space.choices[name] if c != space.values[name]])
        values = {**space.values, name: choice}
        label = f"{name}={choice}"
        if label not in found and space.allows(values):
            found[label] = write_values(source, values)
    return list(found.items())


def one(label: str, path: Path, settings: EvalSettings) -> dict[str, Any]:
    began = time.perf_counter()
    evaluation = evaluate(path, settings)
    entry = next(iter((evaluation.report or {}).get("candidates", {}).values()), {})
    row = {"label": label, "wall_s": round(time.perf_counter() - began, 2),
           "passed": evaluation.fitness.passed, "reason": evaluation.fitness.reason,
           "geomean_tflops": round(evaluation.fitness.geomean, 2),
           "phases_s": entry.get("phases_s"), "compile_ahead": entry.get("compile_ahead")}
    print(json.dumps({k: row[k] for k in ("label", "wall_s", "passed", "geomean_tflops",
                                          "phases_s")}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--mutations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    (ROOT / ".avo").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eval-cost-", dir=ROOT / ".avo") as tmp:
        # Staged as the loop stages them: candidates/<task>/ under a folder of the store.
        staged = Path(tmp) / "candidates" / "attention"
        staged.mkdir(parents=True)
        for helper in CANDIDATES.glob("_*.py"):  # as the loop stages them beside a proposal
            shutil.copy(helper, staged / helper.name)
        settings = EvalSettings(device=args.device, examples=args.examples, call_timeout_s=300,
                                eval_timeout_s=1800, memory_limit_gib=8, rootdir=ROOT,
                                calibration=Path(tmp) / "calibration.json")
        shutil.rmtree(ROOT / ".avo" / "kernel-cache", ignore_errors=True)
        import torch

        document = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                    "examples": args.examples, "evaluations": []}
        rows = document["evaluations"]
        seed = (CANDIDATES / "seed.py").read_text()
        plan = [("seed, nothing kept (first of a run)", CANDIDATES / "seed.py"),
                ("seed again (kernels kept)", CANDIDATES / "seed.py")]
        for i, (move, source) in enumerate(mutations(seed, args.mutations,
                                                     random.Random(args.seed))):
            path = staged / f"mutation_{i}.py"
            path.write_text(source)
            plan.append((f"seed mutation {move} (fresh)", path))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for label, path in plan:
            rows.append(one(label, path, settings))
            args.out.write_text(json.dumps(document, indent=1) + "\n")  # kept if cut off
    print("| evaluation | wall s | start | compile | correctness | timing | calibration |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        p = row["phases_s"] or {}
        print(f"| {row['label']} | {row['wall_s']:.1f} | " + " | ".join(
            f"{p.get(k, 0):.1f}" for k in ("start", "compile", "correctness", "timing",
                                          "calibration")) + " |")


if __name__ == "__main__":
    main()
