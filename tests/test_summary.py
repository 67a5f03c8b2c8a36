"""The terminal summary: one line per candidate, numbers equal to the run's own report."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avo_harness.evolve.fitness import from_report, geomean

HEADER = "avo-harness candidates"
CASE = {"B": 1, "Hq": 2, "Hkv": 2, "Nq": 3, "Nk": 5, "D": 32, "dtype": "float32",
        "causal": False, "sm_scale": None, "layout": "bhnd", "spread": 1.0, "seed": 0}


def _line(text: str, name: str) -> str:
    (line,) = [ln for ln in text.splitlines()
               if ln.startswith(f"candidates/attention/{name}.py:")]
    return line


def test_one_line_per_candidate_with_the_reports_numbers(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str) -> None:
    write_candidate("seed", honest_attention)
    write_candidate("other", honest_attention)
    write_candidate("wrong", honest_attention.replace(".to(q.dtype)", ".to(q.dtype) * 1.05"))
    run = avo_run()
    assert HEADER in run.text and "interpreter-wall" in run.text

    seed_fit = from_report(run.candidate("seed"))
    for name in ("seed", "other"):
        fit = from_report(run.candidate(name))
        base = geomean(b["tflops"] for b in run.report["baselines"].values())
        assert _line(run.text, name) == (
            f"candidates/attention/{name}.py: passed; geomean {fit.geomean:.4g} interpreter "
            f"TFLOP/s; {fit.geomean / base:.2f}x torch-sdpa; "
            f"{fit.geomean / seed_fit.geomean:.2f}x seed")
    assert _line(run.text, "wrong").startswith(
        "candidates/attention/wrong.py: failed (correctness: tolerance: max abs error")
    # Under each, where its seconds went, as the report says.
    lines = run.text.splitlines()
    spent = run.candidate("other")["phases_s"]
    assert lines[lines.index(_line(run.text, "other")) + 1] == (
        f"    {spent['total']:,.1f} s: start {spent['start']:,.1f}, compile "
        f"{spent['compile']:,.1f}, correctness {spent['correctness']:,.1f}, timing "
        f"{spent['timing']:,.1f}, calibration {spent['calibration']:,.1f}")


def test_without_a_seed_or_timings_the_line_says_so(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str) -> None:
    write_candidate("seed", honest_attention)
    write_candidate("other", honest_attention)
    run = avo_run("candidates/attention/other.py")
    assert re.fullmatch(r"candidates/attention/other\.py: passed; geomean \S+ interpreter "
                        r"TFLOP/s; \S+x torch-sdpa; - seed", _line(run.text, "other"))
    replay = avo_run("candidates/attention/seed.py", "--avo-replay", json.dumps(CASE))
    assert _line(replay.text, "seed") == (
        "candidates/attention/seed.py: passed correctness; no benchmark timed")


def test_the_summary_can_be_turned_off(write_candidate: Callable[..., Path],
                                       avo_run: Callable[..., Any], honest_attention: str) -> None:
    write_candidate("seed", honest_attention)
    run = avo_run("-p", "no:avo-summary", "--avo-replay", json.dumps(CASE))
    assert run.ret == 0 and run.outcomes() == {"passed": 1}
    assert HEADER not in run.text
