"""The machine's measurements, kept by one process and read by the next (the collector's
``--avo-calibration``, and ``judge.paired``'s ``--calibration``)."""
from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from avo_harness.judge import machine as machine_module
from avo_harness.judge.machine import Machine
from avo_harness.judge.roofline import Roofline

ROOF = Roofline("cpu", 2e12, 3e11)


def test_what_one_process_keeps_the_next_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    Machine(False, 60, ROOF, {"d64-n1024": 2e-5}).keep(path, {"d64-n1024": {"tflops": 1.0}})
    kept = Machine.kept(path, False, 30)
    assert kept is not None
    machine, baselines = kept
    assert machine.roofline == ROOF and machine.protocol == {"d64-n1024": 2e-5}
    assert machine.timeout_s == 30 and baselines == {"d64-n1024": {"tflops": 1.0}}


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"device": "cpu"}',
                                  '{"device": "NVIDIA H200", "roofline": {}, '
                                  '"protocol_s": {}, "baselines": {}}',
                                  '{"device": "cpu", "roofline": {"x": 1}, '
                                  '"protocol_s": {}, "baselines": {}}'])
def test_a_file_of_another_device_or_one_that_does_not_parse_is_measured_anew(
        tmp_path: Path, text: str) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(text)
    assert Machine.kept(path, False, 30) is None
    assert Machine.kept(tmp_path / "absent.json", False, 30) is None
    assert Machine.kept(None, False, 30) is None


def test_keeping_adds_what_the_file_lacks_and_changes_nothing_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    Machine(False, 60, ROOF, {"a": 1.0}).keep(path, {"a": {"tflops": 1.0}})
    other = Roofline("cpu", 9e12, 9e11)
    Machine(False, 60, other, {"a": 2.0, "b": 3.0}).keep(path, {"a": {"tflops": 2.0},
                                                                  "b": {"tflops": 3.0}})
    kept = Machine.kept(path, False, 60)
    assert kept is not None
    machine, baselines = kept
    # The first measurement of each stands (the run's yardstick); the second's new one joins.
    assert machine.roofline == ROOF and machine.protocol == {"a": 1.0, "b": 3.0}
    assert baselines == {"a": {"tflops": 1.0}, "b": {"tflops": 3.0}}


def test_a_lock_held_elsewhere_delays_a_save_a_bounded_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "calibration.json"
    monkeypatch.setattr(machine_module, "LOCK_WAIT_S", 0.2)
    with open(tmp_path / "calibration.json.lock", "a") as held:  # read access is enough
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(TimeoutError, match="stayed locked"):
            Machine(False, 60, ROOF).keep(path, {})
    assert not path.exists()
    Machine(False, 60, ROOF).keep(path, {})
    assert Machine.kept(path, False, 60) is not None
