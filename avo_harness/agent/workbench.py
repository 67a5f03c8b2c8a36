"""The judge's side of the agent's workbench tools, in a process of its own.

``python -m avo_harness.agent.workbench REQUEST`` reads one request (JSON), runs an attempt
the way the judge does (``judge.checker`` over a ``judge.sandbox.Sandbox``: a fresh
sandboxed child, private inputs written by this process, this process's clock) and writes
the answer as JSON to the request's ``result`` path. A process per request, killed whole at
its time limit by the tool that started it, so that a hostile attempt, or a harness fault
it provokes, costs the agent one error line and never the run.

Requests (``op``): ``case`` checks one case and, if it is right, times it; ``time`` times
benchmark configurations for the attempt and the best committed candidate, interleaved, in
this one process; ``compile`` runs one case in a child with an empty Triton cache and reads
what Triton compiled there (``kernels_in``); ``profile`` calls the attempt a few times for
Nsight Compute, which runs this process (``bench.profile``).
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..collector import summarize
from ..judge.checker import calibrate, check_case, check_timed
from ..judge.roofline import Roofline, measure
from ..judge.sandbox import CandidateFault, Sandbox, SandboxSettings
from ..judge.timer import clock_name
from ..tasks import Case, Task, get_task

#: The inputs' seeds come from here, as the judge's do: the candidate cannot know them.
_PRIVATE = random.SystemRandom()
#: The most one kernel's metadata, IR or SASS may take (a hostile child writes the cache).
_MAX_FILE = 64 << 20
#: Calls of the attempt a profile makes: the first compiles, both are profiled.
_PROFILED_CALLS = 2
_RESOURCES = re.compile(r"\b(REG|STACK|LOCAL):(\d+)")


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    try:
        answer = _run(request)
    except Exception as exc:  # the harness's own failure, said in one line
        answer = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
    Path(request["result"]).write_text(json.dumps(answer))
    return 0


def _run(request: dict[str, Any]) -> dict[str, Any]:
    task = get_task(request["task"])
    cuda = bool(request["cuda"])
    device = "cuda" if cuda else "cpu"
    op = request["op"]
    if op == "case":
        with _box(request, "attempt") as box:
            verdict = check_case(task, box, request["case"], device)
            answer: dict[str, Any] = {"verdict": verdict.to_json()}
            if verdict.passed:
                answer["timing"] = _timed(request, task, box, request["case"])
        return answer
    if op == "time":
        rows = []
        with _box(request, "attempt") as mine, _box(request, "best") as best:
            for i, config in enumerate(request["configs"]):
                # Interleaved, the order alternating: drift of the machine hits both alike.
                order = [("attempt", mine), ("best", best)][::1 if i % 2 == 0 else -1]
                row = {"name": config["name"]}
                for who, box in order:
                    row[who] = _timed(request, task, box, config["case"])
                rows.append(row)
        return {"configs": rows}
    if op == "compile":
        with _box(request, "attempt") as box:
            verdict = check_case(task, box, request["case"], device)
            assert box.scratch is not None
            kernels = kernels_in(box.scratch / "triton", request["asm"],
                                 int(request["asm_chars"]))
        return {"verdict": verdict.to_json(), "kernels": kernels}
    if op == "profile":
        # The inputs are made on the CPU, so that this process launches no kernel of its
        # own: what the profiler sees is the child's.
        call = task.make_inputs(request["case"], "cpu")
        with _box(request, "attempt", profiled=True) as box:
            try:
                for _ in range(_PROFILED_CALLS):
                    box.call(call, *task.output_like(call))
            except CandidateFault as fault:
                return {"pid": os.getpid(), "fault": f"{fault.kind}: {fault}"[:400]}
        return {"pid": os.getpid()}
    raise ValueError(f"unknown request {op!r}")


class _Profiled(Sandbox):
    """The judge's sandbox, but its child keeps the profiler's injection variables (its
    environment is otherwise clean): Nsight Compute follows a process only so."""

    def _environment(self) -> dict[str, str]:
        env = super()._environment()
        env.update({k: v for k, v in os.environ.items()
                    if k == "LD_PRELOAD" or k.startswith(("CUDA_INJECTION", "NV_"))})
        return env


def _box(request: dict[str, Any], who: str, profiled: bool = False) -> closing[Sandbox]:
    """The candidate ``who`` (the attempt, or the best committed) in a sandbox of its own,
    closed (its child and scratch gone) whatever happens."""
    settings = SandboxSettings(bool(request["cuda"]), float(request["timeout_s"]),
                               int(request["memory_limit_bytes"]),
                               tuple(request.get("protected", ())))
    kind = _Profiled if profiled else Sandbox
    return closing(kind(Path(request[who]), request["task"], settings))


def _timed(request: dict[str, Any], task: Task, box: Sandbox, case: Case) -> dict[str, Any]:
    """Timed rounds of ``case`` exactly as a benchmark item times them: fresh private inputs
    every round, every timed output verified, the floor and (on a GPU) the protocol's cost."""
    cuda = bool(request["cuda"])
    device = "cuda" if cuda else "cpu"
    floor = _roofline(request).floor_s(task.flops(case), task.bytes_moved(case))
    protocol_s = 0.0
    if cuda:
        stand_in = Sandbox(None, task.name, SandboxSettings(True, float(request["timeout_s"]), 0))
        try:
            protocol_s = calibrate(task, stand_in, case, device, _PRIVATE)
        finally:
            stand_in.close()
    verdict, times = check_timed(task, box, case, device, floor_s=floor, rng=_PRIVATE,
                                 protocol_s=protocol_s)
    timed = summarize(times, task.flops(case)) if times else {}
    return {"verdict": verdict.to_json(), "clock": clock_name(cuda), "floor_s": floor, **timed}


def _roofline(request: dict[str, Any]) -> Roofline:
    """This machine's ceilings: measured once per step (the request's file keeps them)."""
    path = Path(request["roofline"])
    try:
        return Roofline(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        roof = measure(bool(request["cuda"]))
        path.write_text(json.dumps(asdict(roof)))
        return roof


def kernels_in(cache: Path, asm: list[str], chars: int) -> list[dict[str, Any]]:
    """What Triton compiled into ``cache`` (a Triton cache folder): per kernel its name and
    launch setting (warps, stages, CTAs, register cap), shared memory, and the registers and
    spills ptxas gave it (read from the cubin by cuobjdump: the figures
    ``CompiledKernel.n_regs`` and ``n_spills`` read from the driver); on
    request, its IR, PTX or SASS, cut to ``chars`` characters each. The cache was written by
    the candidate's process: every file is read as untrusted data."""
    kernels = []
    for meta_path in sorted(cache.glob("*/*.json")) if cache.is_dir() else []:
        if meta_path.name.startswith("__grp__") or meta_path.stat().st_size > _MAX_FILE:
            continue
        try:
            meta = json.loads(meta_path.read_text(errors="replace"))
        except ValueError:
            continue
        cubin = meta_path.with_suffix(".cubin")
        if not isinstance(meta, dict) or not cubin.is_file():
            continue
        kernel: dict[str, Any] = {k: meta.get(k) for k in (
            "name", "num_warps", "num_stages", "num_ctas", "maxnreg", "shared", "arch")}
        kernel.update(_resources(cubin, meta.get("name")))
        texts = {}
        for kind in asm:
            text = _sass(cubin) if kind == "sass" else _read(meta_path.with_suffix(f".{kind}"))
            if text is not None:
                texts[kind] = {"chars": len(text), "text": text[:chars]}
        kernel["asm"] = texts
        kernels.append(kernel)
    return kernels


def _read(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size > _MAX_FILE:
        return None
    return path.read_text(errors="replace")


def _cuobjdump(*args: str) -> str | None:
    try:
        from triton import knobs

        tool = knobs.nvidia.cuobjdump.path
        return subprocess.run([tool, *args], capture_output=True, text=True, errors="replace",
                              timeout=60, check=True).stdout
    except (ImportError, RuntimeError, OSError, subprocess.SubprocessError):
        return None


def _resources(cubin: Path, name: Any) -> dict[str, Any]:
    """Registers per thread and spills of the cubin's kernel ``name``, as cuobjdump reports
    them: its local memory (stack frame included, as the driver's LOCAL_SIZE_BYTES counts it,
    from which Triton's ``n_spills`` comes) in 4-byte words; empty if it cannot read them."""
    text = _cuobjdump("--dump-resource-usage", str(cubin)) or ""
    blocks = {b.split(":", 1)[0].strip(): b for b in text.split(" Function ")[1:]}
    found = dict(_RESOURCES.findall(blocks.get(name, next(iter(blocks.values()), ""))))
    if "REG" not in found:
        return {}
    local = int(found.get("LOCAL", 0)) + int(found.get("STACK", 0))
    return {"n_regs": int(found["REG"]), "n_spills": local // 4}


def _sass(cubin: Path) -> str | None:
    return _cuobjdump("-sass", str(cubin))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
