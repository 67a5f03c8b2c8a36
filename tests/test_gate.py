"""The CI gate of docs/ci-gate.md, run as CI runs it: a fresh pytest process per step.

A saved baseline, then: a candidate slower than it by more than the margin fails,
one within the margin passes, and a wrong candidate fails. The candidate's speed is
set by a file beside it (the candidate's process gets none of the parent's environment)
that only its timed calls (the benchmark configurations' length) wait on, so the test
is fast and its verdicts are certain.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avo_harness.tasks import get_task

DOCS = Path(__file__).parents[1] / "docs"
# The documented recipe, exactly (docs/ci-gate.md and docs/examples/*.yml use these).
STORAGE = "--benchmark-storage=.benchmarks-gate"
SAVE = "--benchmark-save=baseline"
# A wide margin: the interpreter's host clock on a busy CI machine is noisy, and the
# delays below are far apart (a GPU runner uses a few percent, see docs/ci-gate.md).
COMPARE = ("--benchmark-compare=0001", "--benchmark-compare-fail=median:50%")
# Length of the interpreter's benchmark configurations; no correctness input is this long
# at once in both dimensions unless hypothesis happens to draw it, which only slows a run.
TIMED_N = get_task("attention").bench_configs(cuda=False)[0].case["Nq"]


def _delayed(exact: str, factor: float = 1.0) -> str:
    """``exact`` (a right plain-torch attention) made to wait the seconds in delay.txt beside
    it when timed."""
    return exact.replace("def attention(", "def _exact(") + f'''
import time
from pathlib import Path


def attention(q, k, v, causal=False, sm_scale=None):
    if q.shape[2] == k.shape[2] == {TIMED_N}:
        time.sleep(float(Path(__file__).with_name("delay.txt").read_text()))
    return _exact(q, k, v, causal, sm_scale) * {factor}
'''


@pytest.mark.slow
def test_the_gate_fails_a_regression_and_a_wrong_candidate_and_passes_the_rest(
        make_project: Callable[..., Path], fresh_run: Callable[..., Any],
        honest_attention: str) -> None:
    root = make_project({"kernel": _delayed(honest_attention)})

    def gate(*args: str, delay: float) -> tuple[int, str]:
        (root / "candidates" / "attention" / "delay.txt").write_text(str(delay))
        run = fresh_run(root, "candidates", STORAGE, *args)
        return run.ret, run.text

    status, text = gate(SAVE, delay=0.1)
    assert status == 0, text
    assert len(list((root / ".benchmarks-gate").glob("*/0001_baseline.json"))) == 1

    # Three times slower than the baseline: beyond the margin.
    status, text = gate(*COMPARE, delay=0.3)
    assert status != 0 and "Performance has regressed" in text, text
    assert "benchmark[interp-d64-n128]" in text and "Field 'median' has failed" in text

    # Ten per cent slower: within it.
    status, text = gate(*COMPARE, delay=0.11)
    assert status == 0 and "Performance has regressed" not in text, text

    # As fast as ever, and wrong by 5%.
    (root / "candidates" / "attention" / "kernel.py").write_text(
        _delayed(honest_attention, factor=1.05))
    status, text = gate(*COMPARE, delay=0.1)
    assert status == 1 and "kernel.py is wrong (rule: tolerance)" in text, text
    assert "FAILED candidates/attention/kernel.py::correctness" in text


def test_the_documents_give_the_tested_recipe() -> None:
    recipe = (DOCS / "ci-gate.md").read_text()
    gpu = (DOCS / "examples" / "gpu-gate.yml").read_text()
    cpu = (DOCS / "examples" / "cpu-gate.yml").read_text()
    for flag in (SAVE.split("=")[0], "--benchmark-compare=0001",
                 "--benchmark-compare-fail=median:"):
        assert flag in recipe and flag in gpu, flag
    assert "--avo-device cpu" in recipe and "--avo-device cpu" in cpu
    assert "self-hosted" in gpu and "--benchmark-compare" not in cpu
