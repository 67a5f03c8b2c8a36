"""How many distinct Triton kernels an evaluation's inputs compile, counted without a GPU.

    PYTHONPATH=. python benchmarks/compile_count.py --out compile-count.json \
        [--examples 100] [--seeds 0 1 2] [CANDIDATE.py ...]

On a GPU most of an attention evaluation is compiling: Triton compiles one kernel per
distinct specialization key (every constexpr and launch option, and for each int argument
whether it is 1 and whether it is a multiple of 16; for each pointer whether it is 16-byte
aligned). This script computes those keys as Triton's own launcher does, with its binder
(``triton.runtime.jit.create_function_from_signature``) and the CUDA backend's
specialization for an sm_90 target, on the inputs an evaluation calls the candidate on
(``collector/correctness.py``'s plan: the boundary cases, ``--examples`` hypothesis
examples drawn under a seed, the benchmark configurations), made on the CPU. Nothing is
compiled or run: every ``@triton.jit`` kernel of the candidate and of the helpers beside
it is replaced by a recorder, and the dispatch is the GPU's (``_tma_ready`` answers as on
an sm_90 GPU, from dtype, strides and alignment; ``_sm_count`` is ``--sms``). Gluon
kernels need a GPU to be chosen (``_gluon_ready``), so for ``gluon_fa3`` this counts its
Triton fallback only.

Keys are counted per kernel over the whole evaluation (one cache), and over the
correctness inputs alone (boundary cases and examples). The hypothesis seed of a real
evaluation is private: ``--seeds`` draws several plans.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ROOT / "candidates" / "attention"


def planned_cases(examples: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """What an evaluation on a GPU calls the candidate on, as ``_planned_cases`` plans it."""
    from hypothesis import Phase, given
    from hypothesis import seed as hypothesis_seed

    from avo_harness.collector.correctness import _search_settings
    from avo_harness.tasks import get_task

    task = get_task("attention")
    drawn: list[dict[str, Any]] = []
    if examples:
        @hypothesis_seed(seed)
        @_search_settings(examples, (Phase.generate,))
        @given(task.cases(large=True))
        def record(case: dict[str, Any]) -> None:
            drawn.append(case)

        record()
    return {"boundary": task.boundary_cases(large=True), "examples": drawn,
            "benchmarks": [b.case for b in task.bench_configs(cuda=True)]}


class Recorder:
    """Stands for one ``@triton.jit`` kernel: a launch records its specialization key."""

    def __init__(self, name: str, fn: Any, backend: Any, keys: dict[str, set[str]]) -> None:
        from triton.runtime.jit import create_function_from_signature

        self.name, self.keys = name, keys
        self.binder = create_function_from_signature(fn.signature, fn.params, backend)
        self.part = ""

    def __getitem__(self, grid: Any) -> Recorder:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        _, specialization, options = self.binder(*args, **kwargs)
        # Triton's key: (tuple(specialization), str(options)) (jit.py, compute_cache_key).
        self.keys[self.part].add(f"{self.name} {tuple(specialization)} {options}")


def _tma_ready_sm90(*tensors: Any) -> bool:
    """``_tma_ready`` as it answers on an sm_90 GPU, from what a CPU tensor has too."""
    import torch

    for t in tensors:
        if t.dtype not in (torch.float16, torch.bfloat16) or t.stride(-1) != 1:
            return False
        if t.data_ptr() % 16 or any(s * t.element_size() % 16 for s in t.stride()[:-1]):
            return False
    return True


def count(path: Path, plans: list[dict[str, list[dict[str, Any]]]], sms: int,
          arch: int) -> dict[str, Any]:
    """Distinct keys per plan: of the correctness inputs, and of all of them."""
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend
    from triton.runtime.jit import JITFunction

    from avo_harness.tasks import get_task

    task = get_task("attention")
    folder = path.resolve().parent
    # As the worker imports a candidate: its folder appended, so ``_helper`` imports.
    sys.path.append(str(folder))
    spec = importlib.util.spec_from_file_location(f"counted_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours = [m for m in list(sys.modules.values()) + [module]
            if Path(getattr(m, "__file__", None) or "/").resolve().parent == folder]
    backend = CUDABackend(GPUTarget("cuda", arch, 32))
    results = []
    seen: set[str] = set()  # the kernels the plans before compiled
    for plan in plans:
        keys: dict[str, set[str]] = defaultdict(set)
        recorders = []
        for m in ours:
            for name, value in list(vars(m).items()):
                if isinstance(value, Recorder):
                    value = value.fn
                if isinstance(value, JITFunction):
                    recorder = Recorder(name, value, backend, keys)
                    recorder.fn = value
                    recorders.append(recorder)
                    setattr(m, name, recorder)
            if hasattr(m, "_tma_ready"):
                m._tma_ready = _tma_ready_sm90
            if hasattr(m, "_sm_count"):
                m._sm_count = lambda device: sms
        for part in ("boundary", "examples", "benchmarks"):
            for recorder in recorders:
                recorder.part = part
            for case in plan[part]:
                call = task.make_inputs({**case, "seed": 0}, "cpu")
                module.attention(*call.args, **call.kwargs)
        correctness = keys["boundary"] | keys["examples"]
        every = correctness | keys["benchmarks"]
        results.append({
            "inputs": {part: len(cases) for part, cases in plan.items()},
            "kernels_correctness": len(correctness), "kernels_all": len(every),
            "kernels_benchmarks": len(keys["benchmarks"]),
            # What this plan compiles that the plans before it did not: a re-evaluation
            # under a new private seed, all the earlier kernels kept.
            "kernels_new": len(every - seen),
            "by_kernel": {r.name: sum(k.startswith(r.name + " ") for k in every)
                          for r in recorders if any(k.startswith(r.name + " ") for k in every)}})
        seen |= every
    sys.path.remove(str(folder))
    for name in [n for n, m in sys.modules.items() if m in ours]:
        del sys.modules[name]  # the next candidate's helpers are its own
    return {"candidate": str(path), "plans": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="*", type=Path,
                        default=[CANDIDATES / "seed.py", CANDIDATES / "gluon_fa3.py"])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sms", type=int, default=132, help="the GPU's SMs (H100, H200: 132)")
    parser.add_argument("--arch", type=int, default=90, help="compute capability, as 90")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET: the interpreter's kernels have no binder")
    import triton

    plans = [planned_cases(args.examples, seed) for seed in args.seeds]
    document = {"triton": triton.__version__, "arch": args.arch, "examples": args.examples,
                "seeds": args.seeds, "candidates": []}
    for path in args.candidates:
        entry = count(path, plans, args.sms, args.arch)
        document["candidates"].append(entry)
        for seed, plan in zip(args.seeds, entry["plans"]):
            print(f"{path.name} seed {seed}: {plan['kernels_correctness']} kernels for "
                  f"{plan['inputs']['boundary'] + plan['inputs']['examples']} correctness "
                  f"inputs, {plan['kernels_all']} with the {plan['inputs']['benchmarks']} "
                  f"benchmark configurations {plan['by_kernel']}, {plan['kernels_new']} not "
                  "in the plans before", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
