"""The GPU's lock (and the calibration file's): other processes and threads wait; a
sandboxed candidate cannot take it."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from avo_harness.judge import gpu_lock
from avo_harness.judge.sandbox import Sandbox, candidate_settings
from avo_harness.tasks import get_task


def test_a_holder_in_another_process_makes_it_wait(tmp_path: Path,
                                                   hold_lock: Callable[..., object]) -> None:
    path = tmp_path / "gpu0.lock"
    holder = hold_lock(path)
    with pytest.raises(TimeoutError, match="stayed locked for 0.3 s"):
        with gpu_lock.held(path, wait_s=0.3):
            pass
    told: list[float] = []
    threading.Timer(0.5, holder.release).start()  # type: ignore[attr-defined]
    began = time.monotonic()
    with gpu_lock.exclusive(path, waiting=lambda: told.append(time.monotonic())):
        waited = time.monotonic() - began
    assert len(told) == 1 and waited >= 0.4


def test_threads_of_one_process_wait_for_each_other(tmp_path: Path) -> None:
    path = tmp_path / "gpu0.lock"
    outcome: list[str] = []

    def other() -> None:
        try:
            with gpu_lock.held(path, wait_s=0.2):
                outcome.append("in")
        except TimeoutError:
            outcome.append("timed out")

    with gpu_lock.held(path):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
    assert outcome == ["timed out"]
    with gpu_lock.held(path, wait_s=0.2):  # released, and takeable again
        pass


GRABBER = '''
import fcntl, os

HELD = []


def rmsnorm(x, weight, eps=None):
    fd = os.open({path!r}, os.O_RDONLY)  # every file reads, none writes
    HELD.append(fd)
    fcntl.flock(fd, fcntl.LOCK_EX)  # any reader may take this one: it excludes no lockf
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        took = 1.0
    except OSError:  # EBADF: an exclusive POSIX lock needs the file open for writing
        took = 0.0
    return x * 0 + took
'''


def test_a_candidate_cannot_take_the_lock_its_parent_times_under(tmp_path: Path) -> None:
    # Where the child can see it (its project; the search keeps the GPUs' locks in /tmp,
    # which bubblewrap hides, but not Landlock alone, and the calibration's in the store).
    folder = tmp_path / "project" / "candidates" / "rmsnorm"
    folder.mkdir(parents=True)
    lock = tmp_path / "project" / "gpu0.lock"
    lock.touch()
    path = folder / "grabber.py"
    path.write_text(GRABBER.format(path=str(lock)))
    task = get_task("rmsnorm")
    box = Sandbox(path, "rmsnorm", candidate_settings(
        [path], cuda=False, timeout_s=120, memory_limit_bytes=0, protected=[lock.parent]))
    try:
        call = task.make_inputs({"shape": [2, 16], "dtype": "float32", "layout": "contiguous",
                                 "eps": None, "spread": 1.0, "seed": 3}, "cpu")
        _, returned = box.call(call, *task.output_like(call))
        assert returned.out is not None and torch.all(returned.out == 0.0)  # lockf refused
        with gpu_lock.held(lock, wait_s=2.0):  # the child's flock, still held, blocks nothing
            pass
    finally:
        box.close()
