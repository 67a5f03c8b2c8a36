"""What the parent's own work costs per timed round of each benchmark configuration.

    PYTHONPATH=. python benchmarks/reference_cost.py --device cuda \
        --out benchmarks/results/reference-cost-h200.json [--chunk-log2 K]

Every timed round draws fresh inputs, computes the float64 truth and the yardstick (the
same computation in the inputs' dtype) and compares the output with them
(``checker.check_timed``). This times each of those steps alone, synchronised, on every
configuration, the median of ``--repeats``: the floor under an evaluation's timing phase
and a paired timing's, whatever the candidate.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from avo_harness.judge.checker import check_output, references
from avo_harness.tasks import get_task


def seconds(step: Callable[[], Any], repeats: int, cuda: bool) -> tuple[float, Any]:
    """The median seconds of ``step`` over ``repeats`` runs (synchronised), and its last
    result."""
    took, result = [], None
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = step()
        if cuda:
            torch.cuda.synchronize()
        took.append(time.perf_counter() - start)
    return statistics.median(took), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--task", default="attention")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-log2", type=int, metavar="K",
                        help="materialise 2**K scores at once in the attention reference "
                        "(its _REFERENCE_CHUNK, 26 as shipped): what fits the GPU's L2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.chunk_log2 is not None:
        from avo_harness.tasks import attention

        attention._REFERENCE_CHUNK = 1 << args.chunk_log2
    cuda = args.device == "cuda"
    task = get_task(args.task)
    rows = []
    for bench in task.bench_configs(cuda=cuda):
        case = {**bench.case, "seed": 1}
        inputs_s, call = seconds(lambda: task.make_inputs(case, args.device), args.repeats, cuda)
        truth_s, truth = seconds(lambda: task.reference(call, torch.float64), args.repeats, cuda)
        refs_s, ref = seconds(lambda: references(task, call), args.repeats, cuda)
        out = ref.truth.to(call.args[0].dtype)
        check_s, _ = seconds(lambda: check_output(task, call, out, ref), args.repeats, cuda)
        row = {"config": bench.name, "inputs_s": inputs_s, "truth_s": truth_s,
               "yardstick_s": max(0.0, refs_s - truth_s), "check_s": check_s,
               "round_s": inputs_s + refs_s + check_s}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    total = {k: round(sum(r[k] for r in rows), 4)
             for k in ("inputs_s", "truth_s", "yardstick_s", "check_s", "round_s")}
    print(json.dumps({"one_round_of_every_config": total}))
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu",
              "repeats": args.repeats, "chunk_log2": args.chunk_log2, "rows": rows,
              "one_round_of_every_config": total}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
