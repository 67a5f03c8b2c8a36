"""The cascade: stop timing a candidate as soon as it provably cannot be committed.

Only ``--avo-evolve`` uses it (the loop passes ``--avo-cascade`` to an evaluation; a CI
gate never does): once a candidate passed correctness, its configurations are timed one
by one, and after each the collector asks :meth:`Cascade.cannot_reach`. The bound is
optimistic: each configuration left is assumed to reach ``optimism`` times the best rate
that the task's lineage ever saw there. So a candidate is never cut when its geomean would
reach the commit bar unless, on some configuration left, it beats the lineage's best by
more than ``optimism``. The issue's rule is a factor of 1, under which any improvement
that is uneven across configurations (faster on the ones timed last) can be cut: hence
``--avo-cascade-optimism`` (1.5 by default; 0 turns the cascade off).

Pytest-free and torch-free: the loop writes it as JSON, the evaluation's collector reads it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .fitness import CUT, SLOWER, geomean
from .lineage import CUT_SLOWER, PASSED, Record

#: A relative allowance for rounding: the loop compares a geomean whose logarithms were
#: summed in another order, and a candidate that ties the bar is committed.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class Cascade:
    #: The geomean a candidate must reach to be committed (``fitness.commit_bar``).
    bar: float
    #: The highest TFLOP/s the lineage saw on each configuration.
    best: dict[str, float]
    #: How far above ``best`` a configuration left is assumed to go; 0: the cascade is off.
    optimism: float

    def __post_init__(self) -> None:
        if not (_number(self.bar) and self.bar > 0):
            raise ValueError(f"the bar must be a number > 0, not {self.bar!r}")
        if not (_number(self.optimism) and (self.optimism == 0 or self.optimism >= 1)):
            raise ValueError(f"the optimism must be 0 (off) or >= 1, not {self.optimism!r}")
        for config, rate in self.best.items():
            if not (isinstance(config, str) and _number(rate) and rate > 0):
                raise ValueError(f"best: {config!r} needs a rate > 0, not {rate!r}")

    def ceiling(self, scores: Mapping[str, float], remaining: Sequence[str]) -> float | None:
        """The highest geomean the candidate may still reach, over every configuration;
        None when nothing bounds it (the cascade is off, or the lineage never timed a
        configuration left)."""
        if not self.optimism or any(config not in self.best for config in remaining):
            return None
        return geomean([*scores.values(), *(self.best[c] * self.optimism for c in remaining)])

    def cannot_reach(self, scores: Mapping[str, float], remaining: Sequence[str]) -> bool:
        """Whether ``remaining`` may go untimed: ``scores`` (the rates timed so far) and the
        optimistic rest stay below the bar."""
        ceiling = self.ceiling(scores, remaining)
        return ceiling is not None and ceiling < self.bar * (1 - _ROUNDING)

    def cut_entry(self, scores: Mapping[str, float], remaining: Sequence[str]) -> dict[str, str]:
        """The report's entry for each configuration left untimed, once ``cannot_reach``."""
        ceiling = self.ceiling(scores, remaining) or 0.0
        return {"outcome": CUT, "reason": (
            f"cut: {SLOWER}: at most {ceiling:.4g} TFLOP/s geomean with the {len(remaining)} "
            f"configurations left at {self.optimism:g}x the lineage's best, below the commit "
            f"bar {self.bar:.4g}")}

    def to_json(self) -> str:
        return json.dumps({"bar": self.bar, "best": self.best, "optimism": self.optimism},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Cascade:
        """Raises ValueError (a JSONDecodeError is one) for anything but what to_json writes."""
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {"bar", "best", "optimism"} \
                or not isinstance(data["best"], dict):
            raise ValueError('expected {"bar": number, "best": {config: number}, '
                             '"optimism": number}')
        return cls(data["bar"], data["best"], data["optimism"])


def from_lineage(records: Iterable[Record], bar: float, optimism: float) -> Cascade:
    """``best`` over the candidates that passed correctness (committed or not, or cut as
    slower: each rate they were timed at counts). Pass every run of the task: a higher
    best only cuts less, and a configuration no record timed is never cut."""
    best: dict[str, float] = {}
    for record in records:
        if record.status in (PASSED, CUT_SLOWER):
            for config, rate in (record.scores or {}).items():
                if rate > best.get(config, 0.0):
                    best[config] = rate
    return Cascade(bar, best, optimism)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)
