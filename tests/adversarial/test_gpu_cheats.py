"""The corpus on CUDA: the cheats that need a GPU (streams, the caching allocator, the device
clock) and the CPU cheats whose timed rounds differ there are rejected, and every honest but
unusual candidate passes. Run on the device: ``pytest tests/adversarial -m gpu``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from adversary import candidate, names, rules, run_project
from test_cheats import EXPECTED as CPU_EXPECTED

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

EXPECTED = {
    "side_stream": {"deferred-write", "timing-escape"},
    "empty_reuse": {"tolerance"},
    "forged_events": {"tampering", "timing-escape"},
}
# Cheats that aim at the timed rounds or the judge's own tensor work: on a GPU too.
TIMED = ("cache_by_pointer", "cache_by_shape", "count_calls", "reuse_previous_output",
         "zeros_on_middle_rounds", "function_mode_at_import", "tensor_method_shadowed",
         "benchmark_shape_shortcut")


def test_gpu_cheats_are_rejected_and_honest_code_passes(tmp_path: Path) -> None:
    assert sorted(EXPECTED) == names("gpu_cheats")
    sources = {name: candidate("gpu_cheats", name) for name in EXPECTED}
    sources.update({name: candidate("cheats", name) for name in TIMED})
    sources.update({name: candidate("honest", name) for name in names("honest")})
    # The plain-torch candidates materialise the score matrix: time the smallest config.
    report, output = run_project(tmp_path, sources, "--avo-device", "cuda", "--avo-examples",
                                 "4", "-k", "correctness or d64-n1024]")
    print(output[-4000:])
    for name, expected in {**EXPECTED, **{n: CPU_EXPECTED[n] for n in TIMED}}.items():
        print(name, rules(report[name]))
        assert rules(report[name]) & expected, (name, report[name])
    for name in names("honest"):
        entry = report[name]
        print(name, entry["correctness"]["outcome"],
              {b: r["outcome"] for b, r in entry["benchmarks"].items()})
        assert entry["correctness"]["outcome"] == "passed", (name, entry["correctness"])
        assert all(b["outcome"] == "passed" for b in entry["benchmarks"].values()), name
