"""The agent's GPU-only workbench tools on the attention seed, as the agent calls them.

    PYTHONPATH=. python benchmarks/agent_tools_gpu.py \
        --out benchmarks/results/agent-tools-h200.txt

Makes one agent workspace (the seed, ``candidates/attention/seed.py``, as the lineage's best
committed candidate and as the attempt), then calls ``compile_info`` (with its TTGIR, PTX and
SASS cut short), ``run_case``, ``time_config`` and ``profile`` on one benchmark
configuration, through ``Workspace.call``: the very path of a tool call in an agent step (the
judge's sandbox, a workbench process of its own, the step's time, the GPU's lock as a
search's slot gives it). Prints what each returns, and writes it to ``--out`` (also when a
call fails).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from avo_harness.agent.knowledge import Knowledge
from avo_harness.agent.tools import Workspace
from avo_harness.evolve.evaluate import EvalSettings, Placement
from avo_harness.evolve.lineage import Record, source_hash
from avo_harness.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "candidates" / "attention" / "seed.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="d64-n1024", help="benchmark configuration")
    parser.add_argument("--chars", type=int, default=1500, help="characters of each IR text")
    parser.add_argument("--out", type=Path, help="also write the answers here")
    parser.add_argument("--step-s", type=float, default=300,
                        help="the agent step's time: every tool call counts against it")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU: on a CPU compile_info and profile answer in a line")
    source = SEED.read_text()
    seed = Record(1, 0, 0, "seed", [], "seed", "the attention seed", source,
                  source_hash(source), "passed", True, None, None, 1.0, None, 0.0, 0.0)
    settings = EvalSettings(device="cuda", examples=100, call_timeout_s=600,
                            eval_timeout_s=1200, memory_limit_gib=64, rootdir=ROOT)
    locks = tempfile.mkdtemp(prefix="avo-locks-")  # as the search's slots have them
    # The helper modules beside the seed are its own, as the operator reads them.
    helpers = {p.name: p.read_text() for p in sorted(SEED.parent.glob("_*.py"))}
    workspace = Workspace(get_task("attention"), [seed], settings,
                          ROOT / ".avo" / "staging" / "agent-tools-gpu",
                          Knowledge.load("attention"), "gpu", print,
                          helpers={1: helpers} if helpers else {},
                          deadline=time.monotonic() + args.step_s,
                          placement=Placement(gpu_lock=Path(locks) / "gpu0.lock"))
    answers = [f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, "
               f"{SEED.relative_to(ROOT)} on {args.config}"]
    try:
        calls = [("write_candidate", {"source": source, "candidate_id": 1}),
                 ("compile_info", {"config": args.config, "asm": ["ttgir", "ptx", "sass"],
                                   "chars": args.chars}),
                 ("run_case", {"config": args.config}),
                 ("time_config", {"configs": [args.config]}),
                 ("profile", {"config": args.config})]
        for tool, tool_args in calls:
            text, error = workspace.call(tool, tool_args)
            shown = tool_args if tool != "write_candidate" else {"source": f"<{SEED.name}>"}
            answers.append(f"## {tool}({shown}){' -> error' if error else ''}\n{text}")
            print(answers[-1], flush=True)
    finally:
        workspace.close()
        if args.out is not None:
            args.out.write_text("\n\n".join(answers) + "\n")


if __name__ == "__main__":
    main()
