"""The fused float64 truth of attention is the plain reference's, to float64 rounding."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avo_harness.tasks import Case, _attention_truth, get_task

ROOT = Path(__file__).resolve().parent.parent
ATTENTION = get_task("attention")
BASE: Case = {"B": 2, "Hq": 4, "Hkv": 2, "Nq": 70, "Nk": 70, "D": 64, "dtype": "bfloat16",
              "causal": False, "sm_scale": None, "layout": "bhnd", "spread": 1.0, "seed": 5}
#: Every layout, both masks, GQA and MQA, tails off the tiles, rows that see no key (causal
#: with fewer keys than queries), a D that is not a power of two, one query, a scale given.
CASES: list[Case] = [
    BASE,
    {**BASE, "causal": True, "layout": "bnhd"},
    {**BASE, "causal": True, "Nq": 90, "Nk": 37, "layout": "padded"},
    {**BASE, "causal": True, "Nq": 33, "Nk": 100, "Hq": 6, "layout": "dmajor"},
    {**BASE, "D": 96, "Hkv": 1, "layout": "mixed", "dtype": "float32", "sm_scale": 0.3},
    {**BASE, "Nq": 1, "Nk": 45, "causal": True, "dtype": "float16", "D": 32, "spread": 4.0},
    {**BASE, "Nq": 129, "Nk": 129, "D": 128, "causal": True, "Hq": 2, "Hkv": 2},
]

_COMPARE = """
import json, sys, torch
from avo_harness.tasks import _attention_truth, get_task
task = get_task("attention")
worst = []
for case in json.loads(sys.argv[1]):
    call = task.make_inputs(case, "cpu")
    q, k, v = call.args
    scale = case["sm_scale"] or case["D"] ** -0.5
    fused = _attention_truth.truth(q, k, v, case["causal"], scale)
    plain = task.reference(call, torch.float64)
    worst.append(float((fused - plain).abs().max()) if plain.numel() else 0.0)
print(json.dumps(worst))
"""


def test_in_the_interpreter_it_is_the_plain_reference_on_every_kind_of_case() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", _COMPARE, json.dumps(CASES)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    worst = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(worst) == len(CASES)
    assert max(worst) < 1e-13, worst


def test_on_a_cpu_and_for_small_cases_the_plain_reference_is_taken() -> None:
    call = ATTENTION.make_inputs(BASE, "cpu")
    assert not _attention_truth.applies(*call.args[:2])


@pytest.mark.parametrize("case", [
    *CASES,
    *(bench.case for bench in ATTENTION.bench_configs(cuda=True)),
], ids=lambda c: f"d{c['D']}-{c['Nq']}x{c['Nk']}-h{c['Hq']}/{c['Hkv']}"
                 f"{'-causal' if c['causal'] else ''}-{c['layout']}-{c['dtype']}")
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_it_is_the_plain_reference(case: Case,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    call = ATTENTION.make_inputs({**case, "seed": 11}, "cuda")
    q, k, v = call.args
    scale = case["sm_scale"] or case["D"] ** -0.5
    scores = case["B"] * case["Hq"] * case["Nq"] * case["Nk"]
    assert _attention_truth.applies(q, k) is (scores >= _attention_truth.MIN_SCORES)
    took = []
    for _ in range(2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fused = _attention_truth.truth(q, k, v, case["causal"], scale)
        torch.cuda.synchronize()
        took.append(time.perf_counter() - start)
    monkeypatch.setattr(_attention_truth, "MIN_SCORES", float("inf"))  # the plain path
    torch.cuda.synchronize()
    start = time.perf_counter()
    plain = ATTENTION.reference(call, torch.float64)
    torch.cuda.synchronize()
    plain_s = time.perf_counter() - start
    error = float((fused - plain).abs().max())
    print(f"fused {took[-1] * 1e3:.1f} ms, plain {plain_s * 1e3:.1f} ms, "
          f"max difference {error:.2e}")
    assert error < 1e-12


def test_where_the_kernel_cannot_be_built_the_plain_reference_is_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Unbuildable:  # as Triton 3.6 refused a float64 dot from 16-bit loads
        def __getitem__(self, grid: object) -> object:
            def launch(*args: object, **kwargs: object) -> None:
                raise RuntimeError("PassManager::run failed")
            return launch

    call = ATTENTION.make_inputs(BASE, "cpu")
    plain = ATTENTION.reference(call, torch.float64)
    monkeypatch.setattr(_attention_truth, "_kernel", Unbuildable())
    monkeypatch.setattr(_attention_truth, "applies", lambda q, k: True)
    assert torch.equal(ATTENTION.reference(call, torch.float64), plain)
    assert _attention_truth._kernel is False  # and never tried again
    assert _attention_truth._compiled() is None
