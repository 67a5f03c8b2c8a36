"""What one evaluation costs, phase by phase, as the search pays it.

    PYTHONPATH=. python benchmarks/eval_cost.py --device cuda \
        --out benchmarks/results/eval-cost-h200.json [--moves NAME=VALUE ...] \
        [--compile-server off]
    PYTHONPATH=. python benchmarks/eval_cost.py --device cuda --before TREE \
        --out benchmarks/results/eval-cost-before-h200.json --moves NAME=VALUE ...

Each evaluation runs through ``evolve.evaluate`` (a fresh pytest process, the sandboxed
child, every check), sharing one ``--avo-calibration`` file as a search run's evaluations
do. In order: the seed with no kernels kept (the first evaluation of a run, which
also measures the machine), the seed again (a warm re-evaluation: its kernels kept),
then ``--mutations`` fresh mutations of the seed, each one tunable moved to another allowed
choice (new source, so cold; ``--moves`` names them, so that two runs make the same).
Written: wall seconds, the report's ``phases_s`` and ``compile_ahead``, and the fitness. On
a GPU each evaluation after the first runs in the process the one before started for it
(``evolve/spare.py``), as in a search.

``--before TREE``: the same plan judged by older code, ``TREE`` being that commit's files
(``git archive REV | tar -x -C TREE``): its own ``pytest`` on its own seed, with the same
moves applied, in a fresh process with a cold Triton cache; its report's ``phases_s`` where
it wrote one. Run it on the same machine as the plan it is held against.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from avo_harness.evolve.evaluate import EvalSettings, evaluate
from avo_harness.tasks import helper_paths
from avo_harness.tunables import read_space, write_values

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ROOT / "candidates" / "attention"


def mutations(source: str, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct one-tunable moves (``NAME=VALUE``) that ``source`` allows."""
    space = read_space(source)
    found: list[str] = []
    while len(found) < count:
        name = rng.choice(sorted(space.choices))
        choice = rng.choice([c for c in space.choices[name] if c != space.values[name]])
        label = f"{name}={json.dumps(choice)}"
        if label not in found and space.allows({**space.values, name: choice}):
            found.append(label)
    return found


def moved(source: str, move: str) -> str:
    """``source`` with the one tunable ``NAME=VALUE`` of ``move`` set; an error if its space
    does not allow it."""
    name, _, value = move.partition("=")
    space = read_space(source)
    values = {**space.values, name: json.loads(value)}
    if name not in space.choices or not space.allows(values):
        raise SystemExit(f"eval_cost: --moves {move}: not an allowed move of this seed")
    return write_values(source, values)


def one(label: str, path: Path, settings: EvalSettings) -> dict[str, Any]:
    began = time.perf_counter()
    evaluation = evaluate(path, settings)
    entry = next(iter((evaluation.report or {}).get("candidates", {}).values()), {})
    row = {"label": label, "wall_s": round(time.perf_counter() - began, 2),
           "passed": evaluation.fitness.passed, "reason": evaluation.fitness.reason,
           "geomean_tflops": round(evaluation.fitness.geomean, 2),
           "phases_s": entry.get("phases_s"), "compile_ahead": entry.get("compile_ahead")}
    jobs = sorted((job for process in (row["compile_ahead"] or {}).get("processes", [])
                   for job in process.get("longest_jobs", [])), key=lambda job: -job[1])
    print(json.dumps({**{k: row[k] for k in ("label", "wall_s", "passed", "geomean_tflops",
                                             "phases_s")}, "longest_jobs": jobs[:4]}),
          flush=True)
    return row


def judged_before(label: str, tree: Path, path: Path, args: argparse.Namespace
                  ) -> dict[str, Any]:
    """``path`` (under ``tree``) judged by ``tree``'s own code: its pytest in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="eval-cost-before-") as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "PYTHONPATH": str(tree), "TRITON_CACHE_DIR": str(Path(tmp) / "tc")}
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", str(path.relative_to(tree)), "-q",
             "-p", "no:cacheprovider", "--avo-device", args.device,
             "--avo-examples", str(args.examples), "--avo-report", str(report)],
            cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - began
        entries = json.loads(report.read_text()).get("candidates", {}) if report.exists() \
            else {}
    entry = next(iter(entries.values()), {})
    row = {"label": label, "wall_s": round(wall, 2), "passed": done.returncode == 0,
           "phases_s": entry.get("phases_s"),
           "output_tail": None if done.returncode == 0 else done.stdout[-400:]}
    print(json.dumps({k: row[k] for k in ("label", "wall_s", "passed")}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--mutations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="draws the moves not named")
    parser.add_argument("--moves", nargs="+", default=[], metavar="NAME=VALUE",
                        help="the mutations' moves (the rest drawn under --seed)")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="judge the plan by the code of this exported older commit")
    parser.add_argument("--compile-server", choices=("on", "off"), default="on",
                        help="compile kernels in the shared compile server (the default)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    tree = args.before.resolve() if args.before else None
    home = (tree or ROOT) / "candidates" / "attention"
    seed_path = home / "seed.py"
    seed = seed_path.read_text()
    moves = list(args.moves)
    drawn = [m for m in mutations(seed, args.mutations + len(moves), random.Random(args.seed))
             if m not in moves]
    moves += drawn[:max(0, args.mutations - len(moves))]
    (ROOT / ".avo").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eval-cost-", dir=ROOT / ".avo") as tmp:
        # Staged as the loop stages them: candidates/<task>/ under a folder of the store, the
        # helpers beside; the older code's beside its own seed, where its collector finds them.
        staged = home if tree else Path(tmp) / "candidates" / "attention"
        staged.mkdir(parents=True, exist_ok=True)
        for helper in [] if tree else helper_paths(CANDIDATES):
            shutil.copy(helper, staged / helper.name)
        settings = EvalSettings(device=args.device, examples=args.examples, call_timeout_s=300,
                                eval_timeout_s=1800, memory_limit_gib=8, rootdir=ROOT,
                                calibration=Path(tmp) / "calibration.json",
                                compile_server=args.compile_server == "on",
                                spare=args.device == "cuda")  # as a GPU search starts them
        for kept in ("kernel-cache", "compile-cache"):  # nothing kept from an earlier run
            shutil.rmtree(ROOT / ".avo" / kept, ignore_errors=True)
        import torch

        document = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                    "examples": args.examples, "code": str(tree) if tree else "this tree",
                    "compile_server": args.compile_server,
                    "evaluations": []}
        rows = document["evaluations"]
        plan = [("seed, nothing kept (first of a run)", seed_path),
                ("seed again (kernels kept)", seed_path)]
        for i, move in enumerate(moves):
            path = staged / f"mutation_{i}.py"
            path.write_text(moved(seed, move))
            plan.append((f"seed mutation {move} (fresh)", path))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            for label, path in plan:
                rows.append(judged_before(label, tree, path, args) if tree
                            else one(label, path, settings))
                args.out.write_text(json.dumps(document, indent=1) + "\n")  # kept if cut off
        finally:
            for i in range(len(moves)):
                (staged / f"mutation_{i}.py").unlink(missing_ok=True)
    print("| evaluation | wall s | start | compile | correctness | timing | calibration |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        p = row["phases_s"] or {}
        print(f"| {row['label']} | {row['wall_s']:.1f} | " + " | ".join(
            f"{p.get(k, 0):.1f}" for k in ("start", "compile", "correctness", "timing",
                                          "calibration")) + " |")


if __name__ == "__main__":
    main()
