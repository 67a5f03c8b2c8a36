"""What the report shows, read out of the lineage: no HTML and no plotting here.

A report covers one run of the search (its numbers come from one device and are
compared by one commit rule); the task's earlier runs are at hand because an
operator may pick parents from them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..evolve.fitness import geomean
from ..evolve.lineage import PENDING, Lineage, Record, best_start
from ..results import CandidateResult, Environment


@dataclass(frozen=True)
class Baseline:
    """The task's library baseline as one report timed it, per configuration."""

    name: str
    tflops: dict[str, float]

    def geomean(self, configs: list[str]) -> float:
        """Over ``configs`` only, so that it compares with a candidate's geomean."""
        if not configs or not set(configs) <= set(self.tflops):
            return 0.0
        return geomean(self.tflops[c] for c in configs)


def entry(record: Record) -> CandidateResult | None:
    """The record's candidate entry in the report of its evaluation (``Report.entry``)."""
    return record.result.entry


def baseline(record: Record) -> Baseline | None:
    """The baseline timed in the same pytest run as ``record`` (absent in older lineages)."""
    timed = record.result.baselines
    rates = {config: float(b.tflops) for config, b in timed.items() if b.tflops}
    if not rates:
        return None
    return Baseline(str(next(iter(timed.values())).name or "baseline"), rates)


@dataclass(frozen=True)
class RunView:
    """One run of a task's search, as the report shows it."""

    task: str
    run_id: int
    #: The run's records in proposal order.
    records: list[Record]
    #: Every record of the task, by id: parents may come from earlier runs.
    known: dict[int, Record]
    #: The run's notebook: what the agent wrote for its later steps, oldest first (events of
    #: kind ``notebook``: ``generation``, ``text``, ``at``).
    notebook: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def latest(cls, lineage: Lineage, task: str) -> RunView | None:
        run_id = lineage.latest_run(task)
        if run_id is None:
            return None
        known = {r.id: r for r in lineage.records(task=task)}
        return cls(task, run_id, [r for r in known.values() if r.run_id == run_id], known,
                   lineage.events(run_id, "notebook"))

    @property
    def islands(self) -> bool:
        """Whether the run evolved several islands (``--avo-islands``)."""
        return any(r.island for r in self.records)

    @property
    def judged(self) -> list[Record]:
        return [r for r in self.records if r.status != PENDING]

    def running_best(self) -> list[Record | None]:
        """After each judged evaluation, the fastest committed version so far (the loop's best)."""
        best: Record | None = None
        trail = []
        for record in self.judged:
            if record.committed and record.geomean and (
                    best is None or record.geomean > (best.geomean or 0.0)):
                best = record
            trail.append(best)
        return trail

    @property
    def best(self) -> Record | None:
        trail = self.running_best()
        return trail[-1] if trail else None

    @property
    def start(self) -> Record | None:
        """The fastest passing starting candidate: the loop's reference for speedups."""
        return best_start(self.judged)

    def configs(self) -> list[str]:
        names: dict[str, None] = {}
        for record in self.judged:
            found = entry(record)
            names.update(dict.fromkeys(found.benchmarks if found is not None else {}))
        return list(names)

    def environment(self) -> Environment:
        """Where the run's numbers come from (its latest report's)."""
        for record in reversed(self.judged):
            found = record.result.environment
            if found.to_json():
                return found
        return Environment()

    def rate_label(self) -> str:
        """TFLOP/s, labelled so that interpreter rates are never read as GPU speed."""
        env = self.environment()
        if env.interpreter:
            return "TFLOP/s (interpreter wall clock, not GPU speed)"
        return f"TFLOP/s ({env.clock})" if env.clock else "TFLOP/s"

    def baseline(self) -> Baseline | None:
        """Timed in the same pytest run as the best version, so the two compare."""
        return baseline(self.best) if self.best is not None else None

    def references(self, record: Record) -> list[tuple[str, float]]:
        """What a geomean is compared with, by name: the best starting candidate, and the
        baseline timed in its own run."""
        start = self.start
        found = [(start.name, start.geomean)] if start and start.geomean else []
        timed = baseline(record)
        rate = timed.geomean(list(record.scores or {})) if timed is not None else 0.0
        if timed is not None and rate:
            found.append((timed.name, rate))
        return found

    def parent(self, record: Record) -> Record | None:
        return self.known.get(record.parents[0]) if record.parents else None

    def tree(self) -> Iterator[tuple[Record, int]]:
        """Depth first by first parent, with depths; roots start a run or are from others.

        Iterative, since a long search can chain more generations than Python recurses.
        """
        ids = {r.id for r in self.records}
        children: dict[int | None, list[Record]] = {}
        for record in self.records:
            first = record.parents[0] if record.parents and record.parents[0] in ids else None
            children.setdefault(first, []).append(record)
        stack = [(r, 0) for r in reversed(children.get(None, []))]
        while stack:
            record, depth = stack.pop()
            yield record, depth
            stack.extend((c, depth + 1) for c in reversed(children.get(record.id, [])))
