"""The workbench's timing is the judge's (``judge.machine.Machine``): a time under the floor
is measured again before it is called impossible; and it holds the lock of its GPU
(``judge/gpu_lock.py``) that the search's evaluations on that GPU hold while they time, so
an agent's timing waits for theirs, and says so."""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from avo_harness.agent import tools
from avo_harness.agent.knowledge import Knowledge
from avo_harness.agent.tools import Workspace
from avo_harness.evolve.evaluate import EvalSettings, Evaluation, Placement
from avo_harness.evolve.fitness import Fitness
from avo_harness.evolve.lineage import Record, source_hash
from avo_harness.tasks import get_task


@pytest.fixture
def workspace(tmp_path: Path, honest_attention: str) -> Workspace:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    seed = Record(id=1, run_id=1, generation=0, name="c1", parents=[], operator="seed",
                  rationale="r", source=honest_attention,
                  source_hash=source_hash(honest_attention), status="passed", committed=True,
                  reason=None, scores=None, geomean=1e-4, report=None, operator_s=0.0,
                  eval_s=0.0)
    settings = EvalSettings(device="cpu", examples=2, call_timeout_s=120, eval_timeout_s=300,
                            memory_limit_gib=8, rootdir=tmp_path)
    ws = Workspace(get_task("attention"), [seed], settings, tmp_path / "scratch",
                   Knowledge.load("attention"), "g001", lambda line: None,
                   placement=Placement(gpu_lock=tmp_path / "locks" / "gpu0.lock"))
    (tmp_path / "locks").mkdir()
    ws.call("write_candidate", {"source": "# a copy\n" + honest_attention})
    yield ws
    ws.close()


def test_a_time_under_a_stale_floor_is_measured_again_not_refused(
        workspace: Workspace) -> None:
    # Ceilings kept from earlier in the step, measured far too low (a machine that was
    # busy): every honest time is then under the floor they give.
    workspace.scratch.mkdir(parents=True, exist_ok=True)
    kept = workspace.scratch / "roofline-cpu.json"
    kept.write_text(json.dumps({"device": "cpu", "matmul_flops_per_s": 1.0,
                                "copy_bytes_per_s": 1.0}))
    text, error = workspace.call("run_case", {})
    assert not error, text
    assert "impossible-speed" not in text and re.search(r"timed: median .* 3 rounds", text), text
    # The ceilings measured again are kept for the step's later requests.
    again = json.loads(kept.read_text())
    assert again["matmul_flops_per_s"] > 1e6 and again["copy_bytes_per_s"] > 1e6


def _hold(path: Path) -> int:
    """Take ``path``'s lock as an evaluation's parent does (another open file: flock sees
    another holder, as it would another process)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_workbench_timing_waits_for_the_gpu_s_lock(workspace: Workspace, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lock = workspace.placement.gpu_lock
    assert lock is not None
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the workbench's folder
    fd = _hold(lock)
    released: list[float] = []

    def release() -> None:
        """Once the workbench waits for the lock (its mark), and 2 s more."""
        give_up = time.monotonic() + 120
        while not list((tmp_path / "tmp").glob("avo-bench-*/waiting")):
            if time.monotonic() > give_up:
                break
            time.sleep(0.1)
        time.sleep(2.0)
        released.append(time.monotonic())
        os.close(fd)

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        text, error = workspace.call("run_case", {})
    finally:
        releaser.join()
    assert released, "the timing ended while the lock was held by another"
    assert not error, text
    waited = re.search(r"\(waited ([\d.]+) s for the GPU's lock: an evaluation was timing on "
                       r"this GPU, and timings never overlap\)", text)
    assert waited and float(waited.group(1)) > 1.0, text
    assert re.search(r"timed: median .* 3 rounds", text), text

    # Held for longer than the step has left: the tool stops and says why, timing nothing.
    fd = _hold(lock)
    try:
        workspace.deadline = time.monotonic() + 30
        text, error = workspace.call("time_config", {"configs": ["interp-d64-n128"]})
    finally:
        os.close(fd)
    assert error and text.startswith("stopped after 30 s"), text
    assert "waiting for the GPU's lock: an evaluation was timing on this GPU, so nothing " \
           "was timed" in text


def test_evaluate_candidate_times_under_the_slot_s_gpu_and_lock(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def evaluate(path: Path, settings: EvalSettings, **kwargs: Any) -> Evaluation:
        seen.update(kwargs)
        return Evaluation(Fitness(False, "correctness: tolerance", {}, 0.0), None, 0.0)

    monkeypatch.setattr(tools, "evaluate", evaluate)
    workspace.placement = dataclasses.replace(workspace.placement,
                                              env=(("CUDA_VISIBLE_DEVICES", "3"),))
    workspace.call("evaluate_candidate", {})
    assert seen["placement"] == workspace.placement
    assert workspace.bench.placement == workspace.placement
