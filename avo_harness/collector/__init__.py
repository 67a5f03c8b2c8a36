"""Turning a candidate module into pytest items, without importing it.

``candidates/<task>/<name>.py`` becomes a ``CandidateFile`` whose items judge the
candidate through the (pytest-free) judge. One concern a module, in the order a
candidate meets them:

- ``candidate``: the file, its sandbox and its items;
- ``compile_ahead``: its kernels compiled ahead in sibling processes;
- ``correctness``: the hypothesis search, and the failure report it leaves;
- ``benchmark``: the timed configurations, the replay clock feeding pytest-benchmark,
  ``--avo-stress`` and the cascade;
- ``calibration``: the machine's ceilings, protocol cost and baselines, once a session,
  kept by ``--avo-calibration``;
- ``keys``: everything it keeps on the pytest config.

What the rest of the harness uses is re-exported here.
"""
from __future__ import annotations

from ..judge.timer import summarize
from .benchmark import BenchmarkItem
from .calibration import load_calibration, save_calibration
from .candidate import CandidateFile
from .compile_ahead import compile_workers
from .correctness import CaseFailure, CorrectnessItem, format_failure

__all__ = ["BenchmarkItem", "CandidateFile", "CaseFailure", "CorrectnessItem",
           "compile_workers", "format_failure", "load_calibration", "save_calibration",
           "summarize"]
