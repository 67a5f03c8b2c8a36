"""Where an evaluation is, as its process writes it and the search shows it."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avo_harness import live
from avo_harness.evolve.evaluate import EvalSettings, evaluate
from avo_harness.evolve.progress import _bar
from avo_harness.tasks import get_task


def test_the_file_holds_the_latest_state_and_is_not_rewritten_every_moment(
        tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    state = live.Live(path)
    state.update(phase="correctness", cases_total=113, force=True)
    state.update(cases_done=7)  # within a quarter second of the last write: kept, not written
    assert live.read(path) == {"phase": "correctness", "cases_done": 0, "cases_total": 113,
                               "configs_done": 0, "configs_total": 0,
                               "elapsed_s": live.read(path)["elapsed_s"]}  # type: ignore[index]
    state.update(force=True)
    assert live.read(path)["cases_done"] == 7  # type: ignore[index]


def test_updates_from_many_threads_leave_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    state = live.Live(path)
    threads = [threading.Thread(target=lambda: [state.update(cases_done=i, force=True)
                                                for i in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(path.read_text())["cases_done"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_a_missing_or_broken_file_reads_as_nothing(tmp_path: Path) -> None:
    assert live.read(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{half")
    assert live.read(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1]")
    assert live.read(tmp_path / "list.json") is None


def test_the_bar_counts_inputs_then_configurations() -> None:
    checking = {"phase": "correctness", "cases_done": 10, "cases_total": 20,
                "configs_done": 0, "configs_total": 16, "elapsed_s": 12.4}
    assert _bar(checking, width=10) == (
        "[#####-----] correctness: 10/20 inputs, 0/16 configurations, 12 s")
    timing = {**checking, "phase": "timing", "configs_done": 4}
    assert _bar(timing, width=8).startswith("[##------] timing:")
    assert _bar({"phase": "start"}, width=4) == "[----] start: 0/0 inputs, 0/0 configurations, 0 s"


@pytest.mark.slow
def test_an_evaluation_tells_its_progress_while_it_runs(
        write_candidate: Callable[..., Path], honest_attention: str,
        pytester: pytest.Pytester) -> None:
    path = write_candidate("honest", honest_attention)
    seen: list[dict[str, Any]] = []
    settings = EvalSettings("cpu", 3, 120, 300, 8, pytester.path)
    evaluation = evaluate(path, settings, on_progress=seen.append)
    assert evaluation.fitness.passed, evaluation.fitness.reason
    task = get_task("attention")
    checking = [s for s in seen if s["phase"] == "correctness"]
    assert checking and all(s["cases_total"] == len(task.boundary_cases(large=False)) + 3
                            for s in checking)
    assert all(s["configs_total"] == len(task.bench_configs(cuda=False)) for s in seen)
    assert {s["phase"] for s in seen} <= {"start", "correctness", "timing", "done"}
