"""Variation operators: what proposes the next candidate.

An operator is any object with a ``name`` and a ``propose(context) -> Proposal``
method. Operators are plugins: implement the ``pytest_avo_operators`` hook (in a
``conftest.py`` or an installed pytest plugin) and return ``{name: factory}``,
where ``factory(config)`` builds the operator; then ``--avo-operator name``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..evaluate import Placement

if TYPE_CHECKING:
    import pytest

    from ...tasks import Task
    from ..lineage import Record


class OperatorExhausted(Exception):
    """The operator has nothing new to propose (e.g. the search space is used up)."""


@dataclass(frozen=True)
class Event:
    """Something an operator did that belongs in the run's history (a supervisor's
    intervention, say); the loop prints ``summary`` and keeps ``detail`` in the lineage."""

    kind: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


class StepAborted(Exception):
    """The step ended without a candidate. What it spent and its events are still
    recorded (a failed generation without source), then the run stops as failed;
    the subclasses below say otherwise."""

    def __init__(self, message: str, *, tokens_in: int = 0, tokens_out: int = 0,
                 cost_usd: float = 0.0, events: tuple[Event, ...] = ()) -> None:
        super().__init__(message)
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.cost_usd = cost_usd
        self.events = events


class NoCandidate(StepAborted):
    """This step found nothing worth evaluating (e.g. its own limits ran out before a
    version passed); the run goes on with the next generation."""


class OperatorBudgetExceeded(StepAborted):
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
    events: tuple[Event, ...] = ()


@dataclass
class VariationContext:
    """What an operator may read: the task, the lineage so far, and its random source."""

    task: Task
    records: list[Record]
    rng: random.Random
    generation: int
    notes: list[str] = field(default_factory=list)
    # What the run's budgets leave (None: no limit). An operator that pays for its work
    # raises OperatorBudgetExceeded rather than spend past them.
    cost_left_usd: float | None = None
    tokens_left: int | None = None
    #: An operator that pays per call reports each call here (prompt tokens, output tokens,
    #: dollars) as it is made: the loop writes it to the lineage at once, so a run killed
    #: mid-step still counts it. What a step's Proposal or StepAborted totals beyond what
    #: was reported is recorded at the step's end.
    spend: Callable[[int, int, float], None] | None = None
    #: Where the step's own runs go (the executor's ``placement_for``): an operator that
    #: times drafts there holds that GPU's lock while it does, so it never times while an
    #: evaluation on the same GPU does. The default: this host as it is, no lock.
    placement: Placement = Placement()

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
