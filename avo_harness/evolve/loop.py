"""The evolution loop behind ``pytest --avo-evolve`` (AVO's rule, unattended).

Each step: choose parents from the lineage, ask the operator for a new module,
stage it, evaluate it with pytest in a fresh process, record it, and commit it to
``candidates/<task>/`` when it passes every correctness item and its geomean is
at least the best committed one (ties accepted, ``--avo-margin`` for noise). The
run stops on the first budget reached: generations, wall time, operator cost or tokens.
"""
from __future__ import annotations

import os
import random
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from ..collector import is_candidate
from ..options import EvolveSettings, read_evolve_settings
from ..tasks import Task, get_task
from .evaluate import EvalSettings, evaluate, settings_from
from .fitness import accepts
from .lineage import Lineage, Record, source_hash
from .operators import (Event, NoCandidate, Operator, OperatorBudgetExceeded, OperatorExhausted,
                        StepAborted, VariationContext, available)
from .progress import Progress


def main(config: pytest.Config) -> int:
    """Entry point from ``pytest_cmdline_main``; returns pytest's exit status."""
    settings = read_evolve_settings(config)
    factories = available(config)
    if settings.operator not in factories:
        raise pytest.UsageError(f"--avo-operator {settings.operator}: unknown operator; "
                                f"available: {', '.join(sorted(factories))}")
    operator = factories[settings.operator](config)
    rootdir = config.rootpath
    store = settings.store
    eval_settings = settings_from(config)
    lineage = Lineage(store)
    try:
        task = get_task(settings.task)
        if settings.resume:
            run_id = lineage.latest_run(task.name)
            if run_id is None:
                raise pytest.UsageError(f"--avo-resume: no run of task {task.name!r} in {store}")
        else:
            run_id = lineage.start_run(task.name, {k: str(v) for k, v in asdict(settings).items()}
                                       | {"device": eval_settings.device})
        evolution = Evolution(task, settings, eval_settings, lineage, run_id, operator,
                              rootdir / "candidates" / task.name, store / "staging", Progress())
        evolution.run()
    finally:
        lineage.close()
    return 1 if evolution.failed else 0


class Evolution:
    def __init__(self, task: Task, settings: EvolveSettings, eval_settings: EvalSettings,
                 lineage: Lineage, run_id: int, operator: Operator, candidates_dir: Path,
                 staging: Path, progress: Progress) -> None:
        self.task = task
        self.settings = settings
        self.eval_settings = eval_settings
        self.lineage = lineage
        self.run_id = run_id
        self.operator = operator
        self.candidates_dir = candidates_dir
        self.staging = staging / "candidates" / task.name
        self.progress = progress
        self.started = time.monotonic()
        self.failed = False

    def run(self) -> str:
        self.progress.line(f"avo: evolving {self.task.name} (run {self.run_id}, operator "
                           f"{self.operator.name}, device {self.eval_settings.device}, "
                           f"store {self.lineage.path})")
        self._restore_committed_files()
        for record in list(self.lineage.pending(self.run_id)):
            self.progress.line(f"resuming: {record.name} was never judged; evaluating it")
            self._evaluate(record)
        if not self.lineage.records(self.run_id):
            self._seed_population()
        reason = self._budget_spent()
        while reason is None:
            generation = 1 + max(r.generation for r in self.lineage.records(self.run_id))
            _, _, cost, tokens = self._spent()
            s = self.settings
            context = VariationContext(
                self.task, self.lineage.records(task=self.task.name),
                random.Random(f"{s.seed}:{self.run_id}:{generation}"), generation,
                cost_left_usd=s.cost_budget_usd - cost if s.cost_budget_usd else None,
                tokens_left=s.token_budget - tokens if s.token_budget else None)
            t0 = time.monotonic()
            try:
                proposal = self.operator.propose(context)
            except OperatorExhausted as exc:
                reason = f"{self.operator.name}: {exc}"
                break
            except StepAborted as exc:
                self._record_aborted_step(generation, exc, time.monotonic() - t0)
                if isinstance(exc, NoCandidate):
                    reason = self._budget_spent()
                    continue
                clean = isinstance(exc, OperatorBudgetExceeded)
                reason = (f"{self.operator.name}: {exc}" if clean
                          else f"operator {self.operator.name} failed: {exc}")
                self.failed = not clean
                break
            except Exception as exc:  # a plugin's bug must not lose the run: record and stop
                reason = f"operator {self.operator.name} failed: {type(exc).__name__}: {exc}"
                self.failed = True
                break
            self._record_events(generation, proposal.events)
            cid = self.lineage.add_pending(
                self.run_id, generation, self._name(generation), proposal.parents,
                self.operator.name, proposal.rationale, proposal.source, time.monotonic() - t0,
                proposal.tokens_in, proposal.tokens_out, proposal.cost_usd)
            self._evaluate(self._record(cid))
            reason = self._budget_spent()
        self.lineage.finish_run(self.run_id, reason)
        self._summary(reason)
        return reason

    def _seed_population(self) -> None:
        seeds = sorted(p for p in self.candidates_dir.glob("*.py") if is_candidate(p))
        if not seeds:
            raise pytest.UsageError(f"--avo-evolve: no candidate in {self.candidates_dir} to "
                                    "start from")
        for generation, path in enumerate(seeds):
            cid = self.lineage.add_pending(self.run_id, generation, path.stem, [], "seed",
                                           f"starting population: {path.name}",
                                           path.read_text(), 0.0)
            self._evaluate(self._record(cid))

    def _evaluate(self, record: Record) -> None:
        seed = record.operator == "seed"
        if seed:
            path = self.candidates_dir / f"{record.name}.py"
            if not path.exists() or source_hash(path.read_text()) != record.source_hash:
                _write_atomically(path, record.source)
        else:
            path = self.staging / f"{record.name}.py"
            _write_atomically(path, record.source)
        with self.progress.evaluating(f"{record.name} ({record.rationale})"):
            evaluation = evaluate(path, self.eval_settings)
        fitness = evaluation.fitness
        best = self._best()
        # The starting population is committed whole: each passing seed is a parent.
        commit = fitness.passed and (seed or accepts(fitness, best, self.settings.margin))
        self.lineage.record_evaluation(
            record.id, passed=fitness.passed, committed=commit, reason=fitness.reason,
            scores=fitness.scores, geomean=fitness.geomean, report=evaluation.report,
            eval_s=evaluation.wall_s)
        if commit and not seed:
            _write_atomically(self.candidates_dir / f"{record.name}.py", record.source)
        if not seed:
            path.unlink(missing_ok=True)
        self._show(self._record(record.id))

    def _record_aborted_step(self, generation: int, exc: StepAborted, operator_s: float) -> None:
        """A step without a candidate still cost something: keep that, and what it noted.
        A step that the run goes on after is always a generation (so the budget advances)."""
        self._record_events(generation, exc.events)
        if not (isinstance(exc, NoCandidate) or exc.cost_usd or exc.tokens_in or exc.tokens_out):
            return
        cid = self.lineage.add_pending(self.run_id, generation, self._name(generation), [],
                                       self.operator.name, "the step ended without a candidate",
                                       "", operator_s, exc.tokens_in, exc.tokens_out,
                                       exc.cost_usd)
        self.lineage.record_evaluation(cid, passed=False, committed=False, reason=str(exc),
                                       scores=None, geomean=None, report=None, eval_s=0.0)
        self._show(self._record(cid))

    def _record_events(self, generation: int, events: tuple[Event, ...]) -> None:
        for event in events:
            self.lineage.add_event(self.run_id, event.kind, {"generation": generation,
                                                             "summary": event.summary,
                                                             **event.detail})
            self.progress.line(f"gen {generation:>3} {event.kind}: {event.summary}")

    def _show(self, record: Record) -> None:
        self.progress.result(record, self._best() or 0.0, self._seed_geomean(),
                             time.monotonic() - self.started, self._budget_left())

    def _name(self, generation: int) -> str:
        return f"evo_r{self.run_id}_g{generation:03d}"

    def _restore_committed_files(self) -> None:
        """Rewrite committed files that a kill left missing; never overwrite a user's edit."""
        for leftover in self.candidates_dir.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        for record in self.lineage.records(task=self.task.name):
            if not record.committed:
                continue
            path = self.candidates_dir / f"{record.name}.py"
            if not path.exists():
                _write_atomically(path, record.source)
                self.progress.line(f"restored {path} from the lineage")
            elif source_hash(path.read_text()) != record.source_hash:
                self.progress.line(f"warning: {path} differs from the version the lineage "
                                   "committed; left as it is")

    def _record(self, cid: int) -> Record:
        return next(r for r in self.lineage.records(self.run_id) if r.id == cid)

    def _best(self) -> float | None:
        scores = [r.geomean for r in self.lineage.records(self.run_id)
                  if r.committed and r.geomean]
        return max(scores) if scores else None

    def _seed_geomean(self) -> float:
        seeds = [r.geomean for r in self.lineage.records(self.run_id)
                 if r.operator == "seed" and r.geomean]
        return max(seeds) if seeds else 0.0

    def _spent(self) -> tuple[int, float, float, int]:
        records = [r for r in self.lineage.records(self.run_id) if r.operator != "seed"]
        return (len(records), time.monotonic() - self.started, sum(r.cost_usd for r in records),
                sum(r.tokens_in + r.tokens_out for r in records))

    def _budget_spent(self) -> str | None:
        generations, elapsed, cost, tokens = self._spent()
        s = self.settings
        if generations >= s.generations:
            return f"generation budget reached ({generations})"
        if s.time_budget_s and elapsed >= s.time_budget_s:
            return f"time budget reached ({elapsed:,.0f} s)"
        if s.cost_budget_usd and cost >= s.cost_budget_usd:
            return f"cost budget reached (${cost:.2f})"
        if s.token_budget and tokens >= s.token_budget:
            return f"token budget reached ({tokens:,})"
        return None

    def _budget_left(self) -> str:
        generations, elapsed, cost, tokens = self._spent()
        s = self.settings
        parts = [f"{max(0, s.generations - generations)} generations left"]
        if s.time_budget_s:
            parts.append(f"{max(0.0, s.time_budget_s - elapsed):,.0f} s left")
        if s.cost_budget_usd:
            parts.append(f"${max(0.0, s.cost_budget_usd - cost):.2f} left")
        if s.token_budget:
            parts.append(f"{max(0, s.token_budget - tokens):,} tokens left")
        return ", ".join(parts)

    def _summary(self, reason: str) -> None:
        records = self.lineage.records(self.run_id)
        seed = self._seed_geomean()
        best = self._best() or 0.0
        failed = sum(r.status == "failed" for r in records)
        self.progress.table(f"committed versions of run {self.run_id} ({self.task.name})",
                            [r for r in records if r.committed], seed)
        speedup = f"{best / seed:.3f}x the seed" if seed else "no passing seed"
        clock = "interpreter wall time, not GPU speed" if self.eval_settings.device == "cpu" \
            else "GPU device time"
        _, _, cost, tokens = self._spent()
        spent = f" Operator spent {tokens:,} tokens, ${cost:.2f}." if tokens or cost else ""
        self.progress.line(f"avo: stopped: {reason}. {len(records)} evaluated, {failed} failed; "
                           f"best geomean {best:.4g} TFLOP/s ({speedup}; {clock}).{spent}")


def print_lineage(config: pytest.Config) -> int:
    """``pytest --avo-lineage``: every run of the store, as tables."""
    store = read_evolve_settings(config).store
    if not (store / "lineage.sqlite").exists():
        raise pytest.UsageError(f"--avo-lineage: no lineage store at {store}")
    lineage = Lineage(store)
    try:
        records = lineage.records()
        progress = Progress()
        for run_id in sorted({r.run_id for r in records}):
            run = [r for r in records if r.run_id == run_id]
            seeds = [r.geomean for r in run if r.operator == "seed" and r.geomean]
            progress.table(f"run {run_id}", run, max(seeds) if seeds else 0.0)
        if not records:
            progress.line("the lineage is empty")
    finally:
        lineage.close()
    return 0


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
