"""The built-in operator: mutation and crossover over a candidate's declared tunables.

It needs no network and no model. Parents come from a tournament among the best
committed candidates; a child changes one or two tunables to a neighbouring
choice (sometimes a random one), or takes each tunable from one of two parents.
It never proposes a configuration that breaks a declared constraint or that the
lineage has already evaluated, and with the same seed it proposes the same
sequence.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any

from ...tunables import Space, TunablesError, Values, read_space, write_values
from . import OperatorExhausted, Proposal, VariationContext
from ..lineage import Record, source_hash

_ATTEMPTS = 500
_TOURNAMENT = 3
_CROSSOVER = 0.3


class BuiltinOperator:
    name = "builtin"

    def propose(self, context: VariationContext) -> Proposal:
        parents = [r for r in context.committed() if r.geomean and _space(r) is not None]
        if not parents:
            raise OperatorExhausted("no committed candidate declares TUNABLES to vary")
        seen = {_canonical_hash(r.source, _space(r).values)  # type: ignore[union-attr]
                for r in context.records if _space(r) is not None}
        rng = context.rng
        ranked = sorted(parents, key=lambda r: r.geomean or 0.0, reverse=True)
        for _ in range(_ATTEMPTS):
            parent = min(rng.sample(ranked, min(_TOURNAMENT, len(ranked))),
                         key=ranked.index)
            space = _space(parent)
            assert space is not None
            mates = [r for r in ranked if r is not parent and _compatible(r, space)]
            if mates and rng.random() < _CROSSOVER:
                mate = rng.choice(mates)
                values = _crossover(space.values, _space(mate).values, rng)  # type: ignore[union-attr]
                if rng.random() < 0.5:
                    values = _mutate(space, values, rng)
                origin = [parent.id, mate.id]
            else:
                values = _mutate(space, space.values, rng)
                origin = [parent.id]
            if space.allows(values) and _canonical_hash(parent.source, values) not in seen:
                return self._proposal(parent, space, values, origin)
        # Local moves found nothing new: fall back to any unexplored point of the best space.
        parent = ranked[0]
        space = _space(parent)
        assert space is not None
        names = list(space.choices)
        points = list(itertools.product(*(space.choices[n] for n in names)))
        rng.shuffle(points)
        for point in points:
            values = dict(zip(names, point))
            if space.allows(values) and _canonical_hash(parent.source, values) not in seen:
                return self._proposal(parent, space, values, [parent.id])
        raise OperatorExhausted("every allowed configuration has been evaluated")

    def _proposal(self, parent: Record, space: Space, values: Values,
                  origin: list[int]) -> Proposal:
        changes = [f"{k} {space.values[k]!r}->{v!r}" for k, v in values.items()
                   if space.values[k] != v]
        how = "crossover" if len(origin) > 1 else "mutation"
        return Proposal(write_values(parent.source, values), origin,
                        f"{how} of {parent.name}: {', '.join(changes)}")


def _mutate(space: Space, values: Values, rng: Any) -> Values:
    out = dict(values)
    names = list(space.choices)
    for name in rng.sample(names, 1 if rng.random() < 0.7 or len(names) < 2 else 2):
        choices = space.choices[name]
        if len(choices) < 2:
            continue
        i = choices.index(out[name]) if out[name] in choices else 0
        if rng.random() < 0.2:
            j = rng.choice([k for k in range(len(choices)) if k != i])
        else:
            j = min(len(choices) - 1, max(0, i + rng.choice((-1, 1))))
            if j == i:
                j = i - 1 if i > 0 else i + 1
        out[name] = choices[j]
    return out


def _crossover(a: Values, b: Values, rng: Any) -> Values:
    return {k: (a[k] if rng.random() < 0.5 else b[k]) for k in a}


_SPACES: dict[str, Space | None] = {}


def _space(record: Record) -> Space | None:
    """The record's tunables (cached by source hash); None if it declares none."""
    if record.source_hash not in _SPACES:
        try:
            _SPACES[record.source_hash] = read_space(record.source)
        except TunablesError:
            _SPACES[record.source_hash] = None
    return _SPACES[record.source_hash]


def _compatible(record: Record, space: Space) -> bool:
    other = _space(record)
    return other is not None and other.choices == space.choices


def _canonical_hash(source: str, values: Values) -> str:
    """Identity of a configuration: the code with its TUNABLES written one canonical way."""
    return _canonical_hash_of(source, tuple(sorted(values.items())))


@functools.lru_cache(maxsize=4096)
def _canonical_hash_of(source: str, values: tuple[tuple[str, Any], ...]) -> str:
    return source_hash(write_values(source, dict(values)))
