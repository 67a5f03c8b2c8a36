"""The locks a timing holds live where no candidate sees them: a reader can hold an flock."""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest
import torch

from avo_harness.collector.calibration import save_calibration
from avo_harness.collector.keys import MACHINE_KEY, SAVES_STOPPED_KEY
from avo_harness.judge import confine
from avo_harness.judge import machine as machine_module
from avo_harness.judge.machine import Machine, calibration_lock
from avo_harness.judge.roofline import Roofline
from avo_harness.judge.sandbox import Sandbox, candidate_settings
from avo_harness.tasks import get_task

GRABBER = '''
import fcntl, os

HELD = []


def rmsnorm(x, weight, eps=None):
    try:  # a shared flock needs only a reader's descriptor, and stalls an exclusive one
        fd = os.open({path!r}, os.O_RDONLY)
    except OSError:
        return x * 0
    HELD.append(fd)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return x * 0 + 1
'''


@pytest.mark.skipif(confine.detect().bwrap is None,
                    reason="needs bubblewrap, whose private /tmp hides the locks' folder")
def test_a_candidate_cannot_reach_the_lock_its_parent_times_under(tmp_path: Path) -> None:
    locks = Path(tempfile.mkdtemp(prefix="avo-locks-"))  # as the search makes its folder
    lock = locks / "gpu0.lock"
    lock.touch()
    folder = tmp_path / "project" / "candidates" / "rmsnorm"
    folder.mkdir(parents=True)
    path = folder / "grabber.py"
    path.write_text(GRABBER.format(path=str(lock)))
    task = get_task("rmsnorm")
    box = Sandbox(path, "rmsnorm", candidate_settings(
        [path], cuda=False, timeout_s=120, memory_limit_bytes=0, protected=[]))
    try:
        call = task.make_inputs({"shape": [2, 16], "dtype": "float32", "layout": "contiguous",
                                 "eps": None, "spread": 1.0, "seed": 3}, "cpu")
        _, returned = box.call(call, *task.output_like(call))
        assert returned.out is not None and torch.all(returned.out == 0.0)  # not found
        fd = os.open(lock, os.O_RDWR)
        try:  # and the child holds nothing the parent waits for
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        box.close()
        lock.unlink()
        locks.rmdir()


def test_the_calibration_lock_lies_beside_the_gpu_s_when_there_is_one(tmp_path: Path) -> None:
    kept = tmp_path / "store" / "calibration" / "run-1.json"
    assert calibration_lock(kept, tmp_path / "avo-locks-x" / "gpu0.lock") == \
        tmp_path / "avo-locks-x" / "run-1.json.lock"
    assert calibration_lock(kept, None) == kept.with_name("run-1.json.lock")


class _Config:
    """The two options and the stash ``save_calibration`` reads."""

    def __init__(self, calibration: Path, gpu_lock: Path) -> None:
        self.stash = pytest.Stash()
        self._options = {"avo_calibration": str(calibration), "avo_gpu_lock": str(gpu_lock)}

    def getoption(self, name: str) -> str:
        return self._options[name]


def test_a_session_whose_save_waited_its_longest_saves_no_more(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "LOCK_WAIT_S", 0.2)
    kept, gpu = tmp_path / "store" / "run-1.json", tmp_path / "locks" / "gpu0.lock"
    gpu.parent.mkdir()
    config = _Config(kept, gpu)
    config.stash[MACHINE_KEY] = Machine(False, 60, Roofline("cpu", 2e12, 3e11))
    with open(calibration_lock(kept, gpu), "a") as other:  # another evaluation saving
        fcntl.flock(other, fcntl.LOCK_EX)
        save_calibration(config, False)  # type: ignore[arg-type]
    assert config.stash[SAVES_STOPPED_KEY] and not kept.exists()
    save_calibration(config, False)  # type: ignore[arg-type]
    assert not kept.exists()
    fresh = _Config(kept, gpu)
    fresh.stash[MACHINE_KEY] = config.stash[MACHINE_KEY]
    save_calibration(fresh, False)  # type: ignore[arg-type]
    assert Machine.kept(kept, False, 60) is not None
    assert not kept.with_name("run-1.json.lock").exists()  # the lock was the GPU folder's

