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
what Triton compiled there (``kernels_in``); ``profile`` calls the attempt a few times in a
child that Nsight Compute starts inside the child's sandbox (``bench.profile``), after
``warm`` compiled them, without it, into the Triton cache they share.

Timing is the judge's own (``judge.machine.Machine``, as a benchmark item times), and it
holds the lock of the GPU (``judge/gpu_lock.py``, the request's ``gpu_lock``) that the
evaluations on that GPU hold while they time: an agent's timing and an evaluation's never
overlap. So does a profile's run.
"""
from __future__ import annotations

import contextlib
import functools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..collector import summarize
from ..judge import gpu_lock
from ..judge.checker import check_case
from ..judge.compile_server import CompileServer
from ..judge.machine import PRIVATE, Machine
from ..judge.roofline import Roofline
from ..judge.sandbox import CandidateFault, Profiler, Sandbox, SandboxSettings
from ..judge.timer import clock_name
from ..tasks import BenchConfig, Case, Task, get_task

#: The most one kernel's metadata, IR or SASS may take (a hostile child writes the cache).
_MAX_FILE = 64 << 20
#: Calls of the attempt a profile makes, all profiled (``warm`` compiled them before).
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
    gpu = _Lock(request)
    machine = _machine(request)
    try:
        answer = _answer(request, task, machine, gpu)
    finally:
        machine.close()
        _keep(request, machine)
    return {**answer, "lock_wait_s": gpu.waited_s} if gpu.waited_s else answer


def _answer(request: dict[str, Any], task: Task, machine: Machine,
            gpu: _Lock) -> dict[str, Any]:
    cuda = bool(request["cuda"])
    device = "cuda" if cuda else "cpu"
    op = request["op"]
    if op == "case":
        with _box(request, "attempt") as box:
            verdict = check_case(task, box, request["case"], device)
            answer: dict[str, Any] = {"verdict": verdict.to_json()}
            if verdict.passed:
                case = request["case"]
                bench = BenchConfig(json.dumps(case, sort_keys=True), case)
                with gpu.held():
                    answer["timing"] = _timed(task, box, bench, machine)
        return answer
    if op == "time":
        rows = []
        with _box(request, "attempt") as mine, _box(request, "best") as best:
            for i, config in enumerate(request["configs"]):
                bench = BenchConfig(config["name"], config["case"])
                # Interleaved, the order alternating: drift of the machine hits both alike.
                order = [("attempt", mine), ("best", best)][::1 if i % 2 == 0 else -1]
                for _, box in order if cuda else ():  # (the interpreter compiles nothing)
                    _warm(task, box, bench.case, device)  # compiled before the GPU is held
                row = {"name": config["name"]}
                with gpu.held():
                    for who, box in order:
                        row[who] = _timed(task, box, bench, machine)
                rows.append(row)
        return {"configs": rows}
    if op == "compile":
        with _box(request, "attempt") as box:
            verdict = check_case(task, box, request["case"], device)
            assert box.scratch is not None
            kernels = kernels_in(box.scratch / "triton", request["asm"],
                                 int(request["asm_chars"]))
        return {"verdict": verdict.to_json(), "kernels": kernels}
    if op in ("warm", "profile"):
        # The inputs are made on the CPU, so that this process launches no kernel of its
        # own. Both keep the child's Triton cache in
        # ``kernel_cache``: ``warm`` (outside the profiler) compiles the kernels, and the C
        # launchers and utilities Triton builds with the system's compiler, into it, so
        # that under Nsight Compute, ``profile``'s child builds nothing.
        call = task.make_inputs(request["case"], "cpu")
        cache = Path(request["kernel_cache"])
        profiled = op == "profile"
        with _box(request, "attempt", profiled=profiled, kernel_cache=cache) as box:
            try:
                box.start()  # (its start needs the GPU to itself no more than a compile)
                with gpu.held() if profiled else contextlib.nullcontext():
                    for _ in range(_PROFILED_CALLS if profiled else 1):
                        box.call(call, *task.output_like(call))
            except CandidateFault as fault:
                return {"fault": f"{fault.kind}: {fault}"[:400]}
        return {}
    raise ValueError(f"unknown request {op!r}")


class _Lock:
    """The lock of the GPU this process times on (``judge/gpu_lock.py``), the one its
    evaluations hold while they time (the request's ``gpu_lock``; None: no lock). While
    another holds it, a file ``waiting`` beside the result says so (the tool that started
    this process reads it if it has to stop it); the seconds waited are counted."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.path = request.get("gpu_lock")
        self.marker = Path(request["result"]).with_name("waiting")
        self.waited_s = 0.0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        began = time.monotonic()
        with gpu_lock.exclusive(self.path, waiting=self.marker.touch):
            if self.marker.exists():
                self.marker.unlink()
                self.waited_s += time.monotonic() - began
            yield


def _box(request: dict[str, Any], who: str, profiled: bool = False,
         kernel_cache: Path | None = None) -> closing[Sandbox]:
    """The candidate ``who`` (the attempt, or the best committed) in a sandbox of its own,
    closed (its child and scratch gone) whatever happens; ``kernel_cache``: its Triton
    cache is restored from there and kept there (``judge/kernel_cache.py``); ``profiled``:
    its child runs under the request's ``profiler``, inside the sandbox."""
    settings = SandboxSettings(bool(request["cuda"]), float(request["timeout_s"]),
                               int(request["memory_limit_bytes"]),
                               tuple(request.get("protected", ())))
    profiler = None
    if profiled:
        spec = request["profiler"]
        profiler = Profiler(tuple(spec["argv"]), tuple(spec["ports"]), Path(spec["report_dir"]))
    cache = request.get("compile_cache")
    return closing(Sandbox(Path(request[who]), request["task"], settings,
                           kernel_cache=kernel_cache, profiler=profiler,
                           compile_server=_compile_server(cache) if cache else None))


@functools.cache
def _compile_server(cache: str) -> CompileServer:
    """This process's server over the run's compile cache (``judge/compile_server.py``):
    one for all of a request's sandboxes, so that two asking for one kernel wait for one
    compile."""
    return CompileServer(Path(cache))


def _warm(task: Task, box: Sandbox, case: Case, device: str) -> None:
    """One untimed call, so that the attempt compiles before the GPU is held; whatever goes
    wrong here goes wrong again in the timed check, which reports it."""
    try:
        call = task.make_inputs({**case, "seed": PRIVATE.randrange(2**31)}, device)
        box.call(call, *task.output_like(call))
    except CandidateFault:
        pass


def _timed(task: Task, box: Sandbox, bench: BenchConfig, machine: Machine) -> dict[str, Any]:
    """Timed rounds of ``bench`` exactly as a benchmark item times them
    (``judge.machine.Machine.time``): fresh private inputs every round, every timed output
    verified, held to the physical floor (measured again, and the attempt timed again,
    before a time is called impossible) and, on a GPU, to the protocol's cost."""
    verdict, times, floor = machine.time(task, box, bench)
    timed = summarize(times, task.flops(bench.case)) if times else {}
    return {"verdict": verdict.to_json(), "clock": clock_name(machine.cuda), "floor_s": floor,
            **timed}


def _machine(request: dict[str, Any]) -> Machine:
    """This machine as the step knows it: its ceilings measured once per step (the request's
    ``roofline`` file keeps them), or now."""
    try:
        roof: Roofline | None = Roofline(**json.loads(Path(request["roofline"]).read_text()))
    except (OSError, ValueError, TypeError):
        roof = None
    return Machine(bool(request["cuda"]), float(request["timeout_s"]), roofline=roof)


def _keep(request: dict[str, Any], machine: Machine) -> None:
    """The ceilings for the step's later requests, if this one measured them (again)."""
    if machine.roofline is None:
        return
    path = Path(request["roofline"])
    text = json.dumps(asdict(machine.roofline))
    try:
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    except OSError:
        pass


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
