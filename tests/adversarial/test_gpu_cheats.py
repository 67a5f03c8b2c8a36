"""The cheats that need a GPU (streams, the caching allocator), rejected on CUDA; the honest
plain-torch candidate passes there. Run on the device: ``pytest tests/adversarial -m gpu``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from adversary import candidate, names, rules, run_project

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

EXPECTED = {
    "side_stream": {"deferred-write", "timing-escape"},
    "empty_reuse": {"tolerance"},
    "forged_events": {"tampering", "timing-escape"},
}


def test_gpu_cheats_are_rejected_and_honest_code_passes(tmp_path: Path) -> None:
    assert sorted(EXPECTED) == names("gpu_cheats")
    sources = {name: candidate("gpu_cheats", name) for name in EXPECTED}
    sources["seed"] = candidate("honest", "several_kernels")
    # The plain-torch candidates materialise the score matrix: time the smallest config.
    report, output = run_project(tmp_path, sources, "--avo-device", "cuda", "--avo-examples",
                                 "10", "-k", "correctness or d64-n1024]")
    print(output[-3000:])
    for name, expected in EXPECTED.items():
        print(name, rules(report[name]))
        assert rules(report[name]) & expected, (name, report[name])
    assert report["seed"]["correctness"]["outcome"] == "passed", report["seed"]["correctness"]
    assert all(b["outcome"] == "passed" for b in report["seed"]["benchmarks"].values())
