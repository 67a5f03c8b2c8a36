"""What the anti-gaming defences cost one candidate's evaluation, on the GPU.

    PYTHONPATH=. python benchmarks/defence_overhead.py --out benchmarks/results/defence-overhead-h100.json

For each suite configuration it times, in the parent, the defended timed check
(``checker.check_timed``: private input sets, one per round where memory allows,
refreshed every round, several rounds' outputs verified against float64 references) and the
undefended minimum it replaces (the same candidate timed on one input set, the
last output checked once). Their difference, summed, over the wall time of the
whole evaluation (``pytest <candidate> --avo-report``, as the loop runs it) is
the overhead.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avo_harness.judge.checker import check_output, check_timed, references  # noqa: E402
from avo_harness.report import environment, write_json_atomically  # noqa: E402
from avo_harness.judge.sandbox import Sandbox, SandboxSettings  # noqa: E402
from avo_harness.tasks import get_task  # noqa: E402
from avo_harness.judge.timer import Rounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default="candidates/attention/seed.py")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    task = get_task("attention")
    path = ROOT / args.candidate

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", str(path), "-q", "-p",
                        "no:cacheprovider", "--avo-report", f"{tmp}/r.json"], cwd=ROOT,
                       check=False, capture_output=True)
        evaluation_s = time.perf_counter() - start

    box = Sandbox(path, task.name, SandboxSettings(cuda=True, timeout_s=600,
                                                   memory_limit_bytes=0))
    rows = []
    try:
        for bench in task.bench_configs(cuda=True):
            start = time.perf_counter()
            verdict, _ = check_timed(task, box, bench.case, "cuda", floor_s=0.0,
                                     rng=random.Random(0))
            defended = time.perf_counter() - start
            start = time.perf_counter()
            call = task.make_inputs({**bench.case, "seed": 1}, "cuda")
            _, _, kept, _ = box.time(Rounds([call.args], dict(call.kwargs), [(0, 1.0)] * 42,
                                            None, frozenset()))
            truth, lowp = references(task, call)
            check_output(task, call, kept[max(kept)], truth, lowp)
            plain = time.perf_counter() - start
            rows.append({"config": bench.name, "passed": verdict.passed,
                         "defended_s": defended, "undefended_s": plain})
            print(f"{bench.name:<26} defended {defended:7.2f} s  undefended {plain:7.2f} s",
                  flush=True)
    finally:
        box.close()
    extra = sum(r["defended_s"] - r["undefended_s"] for r in rows)
    result = {"environment": environment(True), "candidate": args.candidate,
              "evaluation_s": evaluation_s, "defence_s": extra,
              "overhead_fraction": extra / evaluation_s, "configs": rows}
    write_json_atomically(args.out, result)
    print(f"evaluation {evaluation_s:.1f} s; defences {extra:.1f} s "
          f"({100 * extra / evaluation_s:.1f}% of it)")


if __name__ == "__main__":
    main()
