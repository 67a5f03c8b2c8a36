"""The report's phases: seconds moved out of the phase they happened in add up."""
from __future__ import annotations

import time

from avo_harness.phases import PHASES, Phases


def test_start_and_compile_seconds_are_moved_out_of_the_phase_they_happened_in() -> None:
    phases = Phases()
    counters = [0.0, 0.0]
    with phases.measure("correctness", lambda: (counters[0], counters[1])):
        time.sleep(0.05)
        counters[0] += 0.01  # a child started
        counters[1] += 0.02  # it compiled
    seconds = phases.to_json()
    assert seconds["start"] == 0.01 and seconds["compile"] == 0.02
    assert 0.015 <= seconds["correctness"] < 0.2
    assert seconds["total"] == round(sum(seconds[p] for p in PHASES), 3)


def test_a_child_cannot_claim_more_than_the_phase_took() -> None:
    phases = Phases()
    claimed = iter([(0.0, 0.0), (0.0, 1e6)])
    with phases.measure("timing", lambda: next(claimed)):
        time.sleep(0.01)
    seconds = phases.to_json()
    assert seconds["timing"] == 0.0 and 0.01 <= seconds["compile"] < 0.2


def test_a_phase_that_raised_is_counted() -> None:
    phases = Phases()
    try:
        with phases.measure("correctness", lambda: (0.0, 0.0)):
            time.sleep(0.01)
            raise AssertionError("wrong")
    except AssertionError:
        pass
    assert phases.seconds["correctness"] >= 0.01
