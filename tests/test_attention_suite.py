"""benchmarks/attention_suite.py without a GPU: best of cuDNN and FA4, ratios, geomeans,
tables, and the FA4 column where flash_attn is missing, refuses or fails."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from avo_harness.tasks import BenchConfig, Call
from avo_harness.tasks.attention import TASK, Attention
from fa4_stub import pretend_gpu, sdpa_in_fa4_layout


def _load_suite() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "attention_suite.py"
    spec = importlib.util.spec_from_file_location("attention_suite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SUITE = _load_suite()
TINY = BenchConfig("tiny-causal", {"B": 1, "Hq": 4, "Hkv": 2, "Nq": 16, "Nk": 16, "D": 32,
                                   "dtype": "bfloat16", "causal": True, "sm_scale": None,
                                   "layout": "bhnd", "spread": 1.0})


def row(config: str, **tflops: float | None) -> dict[str, Any]:
    """A measured row as measure_row leaves it, before complete_row."""
    base = {"cudnn": None, "flash": None, "efficient": None, "fa4": None}
    return {"config": config, "params": {}, "tflops": base | tflops, "expanded_kv": []}


def completed(*rows: dict[str, Any], ours: tuple[str, ...] = ("ours",)) -> list[dict[str, Any]]:
    for r in rows:
        SUITE.complete_row(r, list(ours))
    return list(rows)


def test_best_is_the_faster_of_cudnn_and_fa4_per_configuration() -> None:
    a, b, c, d = completed(row("a", cudnn=500.0, fa4=600.0, ours=540.0),
                           row("b", cudnn=500.0, fa4=400.0, ours=540.0),
                           row("c", cudnn=500.0, ours=450.0),
                           row("d", ours=450.0))
    assert (a["best_of"], a["tflops"]["best"]) == ("fa4", 600.0)
    assert (b["best_of"], b["tflops"]["best"]) == ("cudnn", 500.0)
    assert (c["best_of"], c["tflops"]["best"]) == ("cudnn", 500.0)  # FA4 absent there
    assert (d["best_of"], d["tflops"]["best"]) == (None, None)
    assert a["ratios"]["ours"] == {"cudnn": 1.08, "fa4": 0.9, "best": 0.9}
    assert b["ratios"]["ours"] == {"cudnn": 1.08, "fa4": 1.35, "best": 1.08}
    assert c["ratios"]["ours"] == {"cudnn": 0.9, "fa4": None, "best": 0.9}


def test_geomean_ratios_cover_the_configurations_each_baseline_was_timed_on() -> None:
    rows = completed(row("a", cudnn=400.0, fa4=800.0, flash=200.0, ours=400.0, half=400.0),
                     row("b", cudnn=400.0, fa4=100.0, flash=200.0, ours=800.0, half=None),
                     row("c", cudnn=400.0, flash=200.0, ours=400.0, half=400.0),
                     ours=("ours", "half"))
    means = SUITE.geomeans(rows, ["ours", "half"])
    assert means["geomean_tflops"]["cudnn"] == pytest.approx(400.0)
    assert means["geomean_tflops"]["fa4"] == pytest.approx(math.sqrt(800.0 * 100.0))
    assert means["geomean_tflops"]["best"] == pytest.approx((800.0 * 400.0 * 400.0) ** (1 / 3))
    assert means["geomean_tflops"]["ours"] == pytest.approx(2 ** (1 / 3) * 400.0)
    assert means["geomean_ratio_to_cudnn"]["ours"] == pytest.approx(2 ** (1 / 3))
    assert means["geomean_ratio_to_flash"]["ours"] == pytest.approx(2 * 2 ** (1 / 3))
    assert means["geomean_ratio_to_fa4"]["ours"] == pytest.approx(math.sqrt(0.5 * 8.0))
    assert means["geomean_ratio_to_best"]["ours"] == pytest.approx((0.5 * 2.0 * 1.0) ** (1 / 3))
    # A candidate that failed a configuration has no overall ratio to anything timed there.
    assert {means[f"geomean_ratio_to_{b}"]["half"] for b in ("cudnn", "fa4", "best")} == {None}


def test_absences_give_one_line_per_reason_with_its_configurations() -> None:
    rows = [row("a"), row("b"), row("c")]
    rows[0]["absent"] = rows[1]["absent"] = {"fa4": "FA4 has no float32 forward"}
    assert SUITE.absences(rows, "fa4") == [
        "FA4 absent on 2 of 3 configurations (a, b): FA4 has no float32 forward"]
    rows[2]["absent"] = {"fa4": "FA4 has no float32 forward"}
    assert SUITE.absences(rows, "fa4") == [
        "FA4 absent on all 3 of 3 configurations: FA4 has no float32 forward"]
    assert SUITE.absences([row("a")], "fa4") == []


def _document(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"correctness": {"ours": {"outcome": "passed"}}, "rows": rows,
            **SUITE.geomeans(rows, ["ours"])}


def test_the_tables_hold_each_candidate_against_cudnn_fa4_and_the_faster() -> None:
    rows = completed(row("d128-n4096", cudnn=600.0, fa4=650.0, flash=340.0, ours=585.0),
                     row("d64-n1024", cudnn=450.0, fa4=400.0, flash=300.0, ours=495.0))
    rows[0]["fa4_max_abs_diff_vs_sdpa"], rows[1]["fa4_max_abs_diff_vs_sdpa"] = 0.004, 0.0078
    rows[1]["expanded_kv"] = ["flash"]
    markdown = SUITE.render_markdown(_document(rows)).splitlines()
    assert markdown[0] == ("| config | cuDNN | FA4 | best | flash | efficient | ours | "
                           "ours / cuDNN | ours / FA4 | ours / best |")
    assert markdown[2] == ("| d128-n4096 | 600.0 | 650.0 | 650.0 (FA4) | 340.0 | - | 585.0 | "
                           "0.975 | 0.900 | 0.900 |")
    assert markdown[3] == ("| d64-n1024 | 450.0 | 400.0 | 450.0 (cuDNN) | 300.0* | - | 495.0 | "
                           "1.100 | 1.238 | 1.100 |")
    assert markdown[4].startswith("| **geomean** | **519.6** | **509.9** | **540.8** |")
    assert markdown[-1] == ("FA4's output against torch SDPA's on the same inputs: max |diff| "
                            "0.0078 over 2 configurations")
    table = SUITE.render_table(_document(rows)).splitlines()
    assert table[0].split() == ["config", "cuDNN", "FA4", "best", "flash", "efficient", "ours",
                                "ours/cuDNN", "ours/FA4", "ours/best"]
    assert table[1].split() == ["d128-n4096", "600.0", "650.0", "650.0F", "340.0", "-",
                                "585.0", "0.975", "0.900", "0.900"]
    assert table[2].split()[3:5] == ["450.0C", "300.0*"]
    assert table[3].split()[0] == "geomean"


def test_fa4s_absence_is_one_line_under_both_tables() -> None:
    rows = completed(row("a", cudnn=500.0, ours=450.0), row("b", cudnn=500.0, ours=450.0))
    for r in rows:
        r["absent"] = {"fa4": "flash_attn.cute does not import (ModuleNotFoundError: x)"}
    line = ("FA4 absent on all 2 of 2 configurations: flash_attn.cute does not import "
            "(ModuleNotFoundError: x)")
    for text in (SUITE.render_table(_document(rows)), SUITE.render_markdown(_document(rows))):
        assert text.splitlines()[-1] == line
        assert "max |diff|" not in text


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Call]]:
    """measure_row on the CPU: its clocks record what they were given and say 1 ms (SDPA's
    cuDNN) or 0.5 ms (FA4); the inputs are made on the CPU."""
    seen: list[tuple[str, Call]] = []

    def time_sdpa(backend: str, call: Call) -> tuple[float | None, bool]:
        seen.append((backend, call))
        return (1e-3, False) if backend == "cudnn" else (None, False)

    def time_library(forward: Any, call: Call) -> float:
        seen.append(("fa4", call))
        forward(call)
        return 5e-4

    make_inputs = Attention.make_inputs
    monkeypatch.setattr(Attention, "make_inputs",
                        lambda self, case, device: make_inputs(self, case, "cpu"))
    monkeypatch.setattr(SUITE, "time_sdpa", time_sdpa)
    monkeypatch.setattr(SUITE, "time_library", time_library)
    return seen


def test_fa4_is_timed_on_the_inputs_cudnn_is_and_checked_against_sdpa(
        monkeypatch: pytest.MonkeyPatch, timed: list[tuple[str, Call]]) -> None:
    pretend_gpu(monkeypatch)
    candidate = {"correctness": {"outcome": "passed"},
                 "benchmarks": {TINY.name: {"outcome": "passed", "tflops": 1e-4}}}
    measured = SUITE.measure_row(TASK, TINY, {"ours": candidate})
    assert [name for name, _ in timed] == ["cudnn", "flash", "efficient", "fa4"]
    assert len({id(call) for _, call in timed}) == 1  # one input set for every baseline
    flops = TASK.flops(TINY.case)
    assert measured["tflops"]["cudnn"] == pytest.approx(flops / 1e-3 / 1e12)
    assert measured["tflops"]["fa4"] == pytest.approx(flops / 5e-4 / 1e12)
    assert measured["best_of"] == "fa4" and "absent" not in measured
    assert measured["fa4_max_abs_diff_vs_sdpa"] == 0.0
    assert measured["ratios"]["ours"]["best"] == pytest.approx(1e-4 / measured["tflops"]["fa4"])


def test_without_flash_attn_the_fa4_column_says_why(
        monkeypatch: pytest.MonkeyPatch, timed: list[tuple[str, Call]]) -> None:
    pretend_gpu(monkeypatch, forward=None)
    measured = SUITE.measure_row(TASK, TINY, {})
    assert [name for name, _ in timed] == ["cudnn", "flash", "efficient"]
    assert measured["tflops"]["fa4"] is None and measured["best_of"] == "cudnn"
    assert measured["absent"]["fa4"].startswith(
        "flash_attn.cute does not import (ModuleNotFoundError: ")


def test_a_failure_of_fa4_on_a_shape_is_its_reason(
        monkeypatch: pytest.MonkeyPatch, timed: list[tuple[str, Call]]) -> None:
    def refuses(*_: Any, **__: Any) -> Any:
        raise AssertionError("(head_dim, head_dim_v)=(32, 32) is not supported\nmore")

    pretend_gpu(monkeypatch, refuses)
    measured = SUITE.measure_row(TASK, TINY, {})
    assert measured["absent"] == {"fa4": "FA4 failed here (AssertionError: (head_dim, "
                                         "head_dim_v)=(32, 32) is not supported)"}
    assert measured["tflops"]["fa4"] is None and measured["best_of"] == "cudnn"


def test_the_stand_in_agrees_with_the_task_where_the_suite_uses_it() -> None:
    """fa4_stub's forward is the task's attention (so a zero difference above means something)."""
    call = TASK.make_inputs({**TINY.case, "seed": 3}, "cpu")
    q, k, v = (t.transpose(1, 2) for t in call.args)
    out, _ = sdpa_in_fa4_layout(q, k, v, causal=True)
    torch.testing.assert_close(out.transpose(1, 2).double(),
                               TASK.reference(call, torch.float64), atol=2e-2, rtol=2e-2)
