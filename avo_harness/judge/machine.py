"""The machine a candidate is timed on, as the parent measures it with the GPU to itself.

Its ceilings (the physical floor, ``roofline``) and what a round of the protocol costs on
each benchmark configuration (``checker.calibrate``, on the harness's own stand-in
child), and the timed check that holds a candidate to both. Pytest-free, so that the
collector (one per session, kept across evaluations by ``--avo-calibration``) and
``paired`` (one per measurement, in a process without pytest) measure alike.
"""
from __future__ import annotations

import fcntl
import json
import random
import time
from pathlib import Path
from typing import Any

from ..tasks import BenchConfig, Task
from .checker import Verdict, calibrate, check_timed
from .roofline import Roofline, measure
from .sandbox import Sandbox, SandboxSettings

#: The longest wait for the calibration file's lock (``keep``): a save is never worth a
#: stalled evaluation (and after one such wait a session saves no more: ``calibration.py``).
LOCK_WAIT_S = 10.0

#: Inputs come from here: the OS's entropy, which a candidate can neither read nor replay.
PRIVATE = random.SystemRandom()


class Machine:
    """This machine's ceilings and protocol costs, each measured on first use (or kept
    from an earlier session)."""

    def __init__(self, cuda: bool, timeout_s: float, roofline: Roofline | None = None,
                 protocol_s: dict[str, float] | None = None) -> None:
        self.cuda, self.timeout_s = cuda, timeout_s
        self.roofline = roofline
        #: Seconds a round of each configuration costs beside the call, by its name.
        self.protocol = dict(protocol_s or {})
        self._stand_in: Sandbox | None = None

    def ceilings(self, remeasure: bool = False) -> Roofline:
        """The ceilings, measured on first use, and again on request, keeping the higher
        rates: ceilings measured while the machine was busy put the floor too high."""
        if self.roofline is None:
            self.roofline = measure(self.cuda)
        elif remeasure:
            self.roofline = self.roofline.best_of(measure(self.cuda))
        return self.roofline

    def protocol_s(self, task: Task, bench: BenchConfig) -> float:
        """What a round of ``bench`` costs beside the call, measured once on the stand-in;
        nothing on a CPU, whose figure is the parent's clock itself."""
        if not self.cuda:
            return 0.0
        if bench.name not in self.protocol:
            if self._stand_in is None:
                self._stand_in = Sandbox(None, task.name,
                                         SandboxSettings(True, self.timeout_s, 0))
            self.protocol[bench.name] = calibrate(task, self._stand_in, bench.case, "cuda",
                                                  PRIVATE)
        return self.protocol[bench.name]

    def calibrate(self, task: Task, configs: list[BenchConfig]) -> None:
        """Measure the ceilings and the protocol's cost on every configuration now, then
        stop the stand-in."""
        try:
            self.ceilings()
            for bench in configs:
                self.protocol_s(task, bench)
        finally:
            self.close()

    def time(self, task: Task, box: Sandbox,
             bench: BenchConfig) -> tuple[Verdict, list[float], float]:
        """The judge's timed check of ``bench`` on ``box`` (``checker.check_timed``): the
        verdict, the times and the floor held to. Before a time is called impossible, the
        ceilings are measured again and the candidate timed again."""
        case, device = bench.case, "cuda" if self.cuda else "cpu"
        for remeasure in (False, True):
            floor = self.ceilings(remeasure).floor_s(task.flops(case), task.bytes_moved(case))
            verdict, times = check_timed(task, box, case, device, floor_s=floor, rng=PRIVATE,
                                         protocol_s=self.protocol_s(task, bench))
            if verdict.rule != "impossible-speed":
                break
        return verdict, times, floor

    @classmethod
    def kept(cls, path: Path | None, cuda: bool, timeout_s: float
             ) -> tuple[Machine, dict[str, Any]] | None:
        """The machine as an earlier process measured it and kept it in ``path`` (the
        collector's ``--avo-calibration``), with the baselines kept beside it; None if
        there is no file, or it is another device's, or it does not parse."""
        try:
            kept = json.loads(path.read_text()) if path is not None else None
            if not isinstance(kept, dict) or kept.get("device") != device_name(cuda):
                return None
            roofline = Roofline(**kept["roofline"])
            protocol_s = {str(k): float(v) for k, v in kept["protocol_s"].items()}
            baselines = dict(kept["baselines"])
        except (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return cls(cuda, timeout_s, roofline, protocol_s), baselines

    def keep(self, path: Path, baselines: dict[str, Any], lock: Path | None = None) -> None:
        """Add what ``kept`` reads to ``path``: the ceilings, the protocol's costs and
        ``baselines``, where the file has none yet. What it holds stays (every evaluation of
        a run is held to the first measurement of each), and the read and the write hold
        ``lock`` (``calibration_lock``), so evaluations running at once lose none of each
        other's."""
        from ..report import write_json_atomically

        assert self.roofline is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock or calibration_lock(path, None), "a") as locked:
            _lock(locked, LOCK_WAIT_S)
            kept = Machine.kept(path, self.cuda, self.timeout_s)
            machine, held = kept if kept is not None else (self, {})
            roof = machine.roofline or self.roofline
            protocol = {**self.protocol, **machine.protocol}
            write_json_atomically(path, {
                "device": device_name(self.cuda), "roofline": {
                    "device": roof.device, "matmul_flops_per_s": roof.matmul_flops_per_s,
                    "copy_bytes_per_s": roof.copy_bytes_per_s},
                "protocol_s": protocol, "baselines": {**baselines, **held}})

    def close(self) -> None:
        """Stop the stand-in's child, if one started."""
        if self._stand_in is not None:
            self._stand_in.close()
            self._stand_in = None


def calibration_lock(path: Path, gpu_lock: Path | None) -> Path:
    """The lock of the calibration file ``path``: beside the GPU's lock where there is one,
    in a folder no candidate sees (bubblewrap hides ``/tmp``), since anyone who can read a
    file can hold an ``flock`` on it, and a child reads the store; else beside the file."""
    folder = gpu_lock.parent if gpu_lock is not None else path.parent
    return folder / f"{path.name}.lock"


def device_name(cuda: bool) -> str:
    """The device a calibration describes: the GPU's name, or cpu."""
    import torch

    return torch.cuda.get_device_name() if cuda else "cpu"


def _lock(file: Any, wait_s: float) -> None:
    """An exclusive lock on ``file`` within ``wait_s`` seconds, or TimeoutError."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{file.name} stayed locked for {wait_s:g} s") from None
            time.sleep(0.05)
