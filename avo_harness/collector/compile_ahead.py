"""Compiling a candidate's kernels ahead of its checks, in sibling processes.

The checks then find the kernels in the candidate's one Triton cache instead of
compiling them one by one; nothing here is judged.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..judge.machine import PRIVATE
from ..judge.sandbox import CandidateFault, HarnessFault, Sandbox
from ..tasks import Case, Task

if TYPE_CHECKING:
    from .candidate import CandidateFile

#: Compile jobs a process's entry of the report names, longest first.
LONGEST_JOBS = 3


def compile_workers(cuda: bool) -> int:
    """Processes that compile a candidate's kernels ahead, beside its own: half the cores
    (at most 8) on a GPU; none in the interpreter, which compiles nothing."""
    return min(8, max(1, (os.cpu_count() or 2) // 2)) if cuda else 0


def in_compile_order(task: Task, checked: list[Case], benches: list[Case]) -> list[Case]:
    """The cases to compile ahead, longest compiles first: the benchmark configurations
    (the large-tile, warp-specialized paths, whose compiles take tens of seconds), then the
    checked cases by their work, largest first. Processes take them in that order, so no
    slow compile starts last and holds up the checks alone."""
    return benches + sorted(checked, key=task.flops, reverse=True)


@dataclass
class Ahead:
    """Compiling ahead once the candidate's own process has done its share: its siblings
    may still be on their last cases while the checks begin (those meet a kernel still
    compiling as a wait for it, through the compile server, or compile it themselves)."""

    cases: int
    main: dict[str, Any]
    siblings: list[Future[dict[str, Any]]]
    pool: ThreadPoolExecutor

    def finish(self) -> dict[str, Any]:
        """Wait for the siblings (each closed when done); what every process spent (the
        report's ``compile_ahead``)."""
        try:
            spent = [self.main, *(future.result() for future in self.siblings)]
        finally:
            self.pool.shutdown(wait=True)
        return {"cases": self.cases, "processes": spent}


def compile_ahead(file: CandidateFile, cases: list[Case], workers: int) -> Ahead:
    """Call the candidate once on each of ``cases``, taken from one queue by ``workers``
    sibling processes and its own, all at once, and drop what they return: the kernels
    they compile land in the candidate's one Triton cache (the processes share its scratch
    folder), so the checks that follow find them compiled. No verdict comes from here; a
    fault stops that process, and the checks meet it again. Returns when the queue is
    empty and the candidate's own process is done: ``Ahead.finish`` waits for the rest."""
    main = file.sandbox()
    boxes = [main] + [Sandbox(main.path, main.task_name, main.settings, sibling_of=main)
                      for _ in range(workers)]

    todo: queue.SimpleQueue[Case] = queue.SimpleQueue()
    for case in cases:
        todo.put(case)
    file.live.update(phase="compile", cases_done=0, cases_total=len(cases), force=True)
    done = itertools.count(1)
    handed_over = threading.Event()  # the checks report progress from then on

    def run(box: Sandbox, began: float) -> dict[str, Any]:
        calls, fault = 0, None
        booted: float | None = None
        try:
            if box is main:
                if main_fault:
                    raise RuntimeError(main_fault)
            else:
                box.start()
            booted = time.perf_counter()
            while True:
                try:
                    case = todo.get_nowait()
                except queue.Empty:
                    break
                call = file.task.make_inputs({**case, "seed": PRIVATE.randrange(2**31)},
                                             file.device)
                box.call(call, *file.task.output_like(call))
                calls += 1
                if not handed_over.is_set():
                    file.live.update(cases_done=next(done))
        except (CandidateFault, HarnessFault, RuntimeError, OSError, ValueError) as exc:
            fault = main_fault if box is main and main_fault else type(exc).__name__
        finally:
            if box is not main:
                box.close()
        booted = booted or time.perf_counter()
        spent = {"boot_s": round(booted - began, 3), "calls": calls,
                 "calls_s": round(time.perf_counter() - booted, 3),
                 "compile_s": round(box.compile_s, 3)}
        if box.compiles:  # what the compile server did for it: hits, compiles, ...
            spent["served"] = dict(box.compiles)
        if box.compile_jobs:  # and the longest jobs it ran for it, which bound the phase
            spent["longest_jobs"] = [list(job) for job in sorted(
                box.compile_jobs, key=lambda job: -job.seconds)[:LONGEST_JOBS]]
        return {**spent, "fault": fault} if fault else spent

    began, main_fault = time.perf_counter(), None
    pool = ThreadPoolExecutor(max(1, workers))
    siblings = [pool.submit(run, box, began) for box in boxes[1:]]
    # The candidate's own process starts and works on this thread, which outlives the
    # checks (the siblings meanwhile boot in the pool's): a sandboxed child is killed when
    # the thread that started it ends (bubblewrap's --die-with-parent).
    try:
        main.start()
    except (CandidateFault, HarnessFault, RuntimeError, OSError, ValueError) as exc:
        main_fault = type(exc).__name__  # the checks meet it again
    mine = run(main, began)
    handed_over.set()
    return Ahead(len(cases), mine, siblings, pool)
