"""No drift in precision: a candidate may not use much more of the tolerance than the seeds.

Each commit may lose a little accuracy and still pass the tolerance; forty commits add up.
So the search holds every candidate to the starting candidates' error: a report entry's
``precision`` section gives, per benchmark configuration, the RMS over the elements of the
verified timed outputs of ``|out - truth| / tolerance`` (``judge.checker.precision``). The
configurations, and so the shapes, dtypes and distribution of the inputs, are the same for
every candidate of a task, and dividing by each input set's own tolerance makes different
draws comparable. Pure: no torch, no pytest; the loop calls :func:`regression` before it
commits.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

from ..results import CandidateResult

#: A report entry, or its JSON.
Entry = Union[CandidateResult, Mapping[str, Any]]

RULE = "precision-regression"


def regression(entry: Entry, seeds: Sequence[Entry], factor: float) -> str | None:
    """None if ``entry``'s RMS error over the tolerance is at most ``factor`` x the seeds'
    on every configuration both have; else a one-line ``precision-regression:`` reason with
    the numbers. ``factor`` 0 is off (``--avo-precision-drift 0``); a configuration that the
    entry or every seed lacks data for (an older report, a configuration not timed) is not
    compared.

    The bar of a configuration is the loosest seed there (the highest RMS), not the most
    accurate one: the starting candidates are all accepted kernels, so each of them, and a
    descendant as accurate as its own seed, must pass it; a bar at the tightest seed would
    refuse every descendant of a seed that is accurate enough but less so than another. It
    still catches the drift it is for: a float16-rounded accumulator's RMS is several times a
    float32 accumulator's, while two honest float32 kernels are within a few percent.
    """
    if not factor:
        return None
    mine = _configs(entry)
    theirs = [_configs(seed) for seed in seeds]
    over = []
    for name, rms in mine.items():
        bar = max((seed[name] for seed in theirs if name in seed), default=None)
        if bar is not None and rms > factor * bar:
            over.append(f"{name} {rms:.4g} > {factor:g} x {bar:.4g}")
    if not over:
        return None
    return (f"{RULE}: RMS error over the tolerance above {factor:g} x the starting "
            f"candidates' highest on {len(over)} of {len(mine)} configurations: "
            + "; ".join(over))


def _configs(entry: Entry) -> dict[str, float]:
    """The RMS of each configuration in an entry's ``precision`` section (none in old ones)."""
    read = CandidateResult.of(entry)
    return read.precision_rms() if read is not None else {}
