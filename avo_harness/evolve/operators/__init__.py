"""Variation operators: what proposes the next candidate.

An operator is any object with a ``name`` and a ``propose(context) -> Proposal``
method. Operators are plugins: implement the ``pytest_avo_operators`` hook (in a
``conftest.py`` or an installed pytest plugin) and return ``{name: factory}``,
where ``factory(config)`` builds the operator; then ``--avo-operator name``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    import pytest

    from ...tasks import Task
    from ..lineage import Record


class OperatorExhausted(Exception):
    """The operator has nothing new to propose (e.g. the search space is used up)."""


class OperatorBudgetExceeded(Exception):
    """The operator stopped because a cost budget ran out; the run ends cleanly."""


@dataclass(frozen=True)
class Proposal:
    """A new candidate module's source, where it came from, and what it cost."""

    source: str
    parents: list[int]
    rationale: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass
class VariationContext:
    """What an operator may read: the task, the lineage so far, and its random source."""

    task: Task
    records: list[Record]
    rng: random.Random
    generation: int
    notes: list[str] = field(default_factory=list)

    def committed(self) -> list[Record]:
        return [r for r in self.records if r.committed]


class Operator(Protocol):
    name: str

    def propose(self, context: VariationContext) -> Proposal: ...


OperatorFactory = Callable[["pytest.Config"], Operator]


def available(config: pytest.Config) -> dict[str, OperatorFactory]:
    """Every operator registered through the ``pytest_avo_operators`` hook."""
    factories: dict[str, OperatorFactory] = {}
    for mapping in config.hook.pytest_avo_operators(config=config):
        factories.update(mapping)
    return factories
