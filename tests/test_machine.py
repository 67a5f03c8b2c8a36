"""The machine's measurements, kept by one process and read by the next (the collector's
``--avo-calibration``, and ``judge.paired``'s ``--calibration``)."""
from __future__ import annotations

from pathlib import Path

import pytest

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
