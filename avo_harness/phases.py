"""Where an evaluation's seconds go: the report's ``phases_s``.

Each candidate file's items run inside :meth:`Phases.measure`; the seconds its sandboxes
spent starting children and (by the children's word) compiling kernels are moved out of
the phase they happened in, so the phases add up to the wall time of the items:

- ``start``: starting the candidate's processes (the interpreter, torch, the import);
- ``compile``: compiling its kernels, ahead in parallel or at first calls;
- ``correctness``: boundary cases and examples, their references and checks;
- ``timing``: the timed rounds, their input sets and the verification of every output
  (and the runs of ``--avo-stress``);
- ``calibration``: the harness's own measurements (the protocol's stand-in, the library
  baseline), made once per session and so only in its first candidate;
- ``total``: the sum.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PHASES = ("start", "compile", "correctness", "timing", "calibration")


@dataclass
class Phases:
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @contextmanager
    def measure(self, phase: str, counters: Callable[[], tuple[float, float]]) -> Iterator[None]:
        """Count the block's wall time as ``phase``, less the seconds ``counters()`` (the
        sandboxes' start and compile seconds so far) grew by meanwhile."""
        began, (start0, compile0) = time.perf_counter(), counters()
        try:
            yield
        finally:
            wall = time.perf_counter() - began
            start1, compile1 = counters()
            moved = min(wall, max(0.0, start1 - start0) + max(0.0, compile1 - compile0))
            self.seconds["start"] += min(wall, max(0.0, start1 - start0))
            self.seconds["compile"] += moved - min(wall, max(0.0, start1 - start0))
            self.seconds[phase] += wall - moved

    def to_json(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["total"] = round(sum(self.seconds.values()), 3)
        return out


def listed(phases_s: dict[str, float], unit: str = "") -> str:
    """``start 3.1, compile 12.0, ...`` of a report's ``phases_s`` (``unit`` after each),
    the phases it has, in their order."""
    return ", ".join(f"{name} {phases_s[name]:,.1f}{unit}" for name in PHASES
                     if isinstance(phases_s.get(name), (int, float)))


def describe(phases_s: dict[str, float]) -> str:
    """``31.0 s: start 3.1, compile 12.0, correctness 4.2, timing 9.8, calibration 1.9``."""
    return f"{phases_s.get('total', 0.0):,.1f} s: {listed(phases_s)}"
