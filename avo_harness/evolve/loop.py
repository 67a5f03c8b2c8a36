"""The evolution loop behind ``pytest --avo-evolve`` (AVO's rule, unattended).

Each step: choose parents from the lineage, ask the operator for a new module,
stage it, evaluate it with pytest in a fresh process, record it, and commit it to
``candidates/<task>/`` when it passes every correctness item and its geomean is
at least the best committed one (ties accepted, ``--avo-margin`` for noise). The
run stops on the first budget reached: generations, wall time, operator cost or tokens.
The time budget is hard: no evaluation starts that the time left cannot finish (by the
longest of this run's proposals timed in full), and one in flight is ended at the limit
and recorded as cut. A proposal's evaluation gets the cascade (cascade.py), which stops
timing it once it cannot reach the commit bar.

An evaluation runs candidate code, so what it changes in ``candidates/<task>/`` is
undone after it: committed files get back what they held when the run started (or
were committed), and files it left there go. A candidate whose evaluated file
changed during its evaluation is failed for tampering, whatever its report says.
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ..options import EvolveSettings, settings_of
from ..results import candidate_entry
from ..tasks import HELPER_NAME, Task, get_task, helper_paths, is_candidate
from . import precision
from .cascade import from_lineage
from .evaluate import (EvalSettings, Evaluation, Placement, close_spares, end_all,
                       settings_from, sweep)
from .fitness import Fitness, accepts, commit_bar
from .lineage import (CUT_SLOWER, CUT_TIME, FAILED, HARNESS_ERROR, PASSED, PENDING, START,
                      Lineage, Record, best_committed, best_start)
from .operators import (Event, NoCandidate, Operator, OperatorBudgetExceeded, OperatorExhausted,
                        Proposal, StepAborted, VariationContext, available)
from .paired import commits
from .progress import Progress
from .scheduler import Done, Executor, Job, LocalExecutor, Pair, RayUnusable, Slot, executor_for


def main(config: pytest.Config) -> int:
    """Entry point from ``pytest_cmdline_main``; returns pytest's exit status."""
    settings = settings_of(config).evolve
    factories = available(config)
    if settings.operator not in factories:
        raise pytest.UsageError(f"--avo-operator {settings.operator}: unknown operator; "
                                f"available: {', '.join(sorted(factories))}")
    rootdir = _project_root(config, settings.task)
    operator = factories[settings.operator](config)
    store = settings.store
    eval_settings = settings_from(config)
    task = get_task(settings.task)
    sweep()  # what an earlier controller killed with kill -9 left in the temporary folder
    with contextlib.ExitStack() as cleanup:
        # The GPUs' lock files, out of every candidate's reach (a sandbox has its own /tmp).
        locks = tempfile.mkdtemp(prefix="avo-locks-")
        cleanup.callback(shutil.rmtree, locks, ignore_errors=True)
        cleanup.callback(close_spares)  # after the executor's close: no evaluation runs
        try:
            executor = executor_for(settings, eval_settings.device == "cuda", task.name,
                                    Path(locks))
        except RayUnusable as exc:
            raise pytest.UsageError(str(exc)) from None
        cleanup.callback(executor.close)  # (the run closes it too; twice is harmless)
        lineage = Lineage(store)
        cleanup.callback(lineage.close)
        if settings.resume:
            run_id = lineage.latest_run(task.name)
            if run_id is None:
                raise pytest.UsageError(f"--avo-resume: no run of task {task.name!r} in {store}")
        else:
            run_id = lineage.start_run(task.name, {k: str(v) for k, v in asdict(settings).items()}
                                       | {"device": eval_settings.device})
        eval_settings = replace(eval_settings,
                                calibration=store / "calibration" / f"run-{run_id}.json")
        evolution = Evolution(task, settings, eval_settings, lineage, run_id, operator,
                              rootdir / "candidates" / task.name, store / "staging", Progress(),
                              executor)
        try:
            evolution.run()
        except KeyboardInterrupt:
            evolution.progress.line("avo: interrupted (Ctrl-C): what was judged is kept; "
                                    "--avo-resume evaluates what was in flight")
            return int(pytest.ExitCode.INTERRUPTED)
    return 1 if evolution.failed else 0


def _project_root(config: pytest.Config, task: str) -> Path:
    """pytest's rootdir, where the candidates are; refused without ``candidates/<task>/``.

    pytest picks its rootdir before plugins' options exist, so the value of ``--avo-store
    PATH`` (two words) counts as a test path there when PATH exists: the rootdir moves to a
    common ancestor, and a resume would restore and commit candidates into it."""
    root = config.rootpath
    if (root / "candidates" / task).is_dir():
        return root
    why = ""
    if "--avo-store" in config.invocation_params.args:
        why = (": pytest took its rootdir from --avo-store's value, an existing path; write "
               "--avo-store=PATH as one word")
    raise pytest.UsageError(f"--avo-evolve: no candidates/{task}/ under pytest's rootdir "
                            f"{root}{why}")


class Evolution:
    def __init__(self, task: Task, settings: EvolveSettings, eval_settings: EvalSettings,
                 lineage: Lineage, run_id: int, operator: Operator, candidates_dir: Path,
                 staging: Path, progress: Progress, executor: Executor | None = None) -> None:
        self.task = task
        self.settings = settings
        self.eval_settings = eval_settings
        self.lineage = lineage
        self.run_id = run_id
        self.operator = operator
        self.candidates_dir = candidates_dir
        self.staging = staging / "candidates" / task.name
        self.progress = progress
        self.executor = executor or LocalExecutor([Slot("cpu0", Placement())])
        #: Steps in flight at once: one, or a slot's worth for an operator whose steps may
        #: run side by side (``concurrent_steps = True``, e.g. one agent session each).
        self._parallel = (self.executor.capacity if getattr(operator, "concurrent_steps", False)
                          else 1)
        #: Evaluations judged by this process (what ``--avo-migration`` counts).
        self._finished = 0
        self.started = time.monotonic()
        self.failed = False
        #: What each step in flight reported spending, call by call (``_spend``), by
        #: generation; written from the step threads.
        self._reported: dict[int, tuple[int, int, float]] = {}
        self._reported_lock = threading.Lock()
        #: What each committed file of the task must hold; checked after every evaluation.
        self.committed_files: dict[Path, bytes] = {}

    def run(self) -> str:
        workers = f", {self.executor.capacity} workers" if self.executor.capacity > 1 else ""
        self.progress.line(f"avo: evolving {self.task.name} (run {self.run_id}, operator "
                           f"{self.operator.name}, device {self.eval_settings.device}"
                           f"{workers}, store {self.lineage.path})")
        self._guard_committed_files()
        resuming = bool(self.lineage.records(self.run_id))
        if not resuming:
            self._seed_population()
        try:
            reason = self._judge_unjudged(resuming)
            if reason is None:
                reason = self._budget_spent() or self._steady_state()
        except BaseException:
            end_all()  # Ctrl-C or a bug: nothing keeps running; the rows stay pending
            raise
        finally:
            self.executor.close()
        self.lineage.finish_run(self.run_id, reason)
        self._summary(reason)
        # A candidate the harness failed to judge leaves the run incomplete until --avo-resume.
        if any(r.status == HARNESS_ERROR for r in self.lineage.records(self.run_id)):
            self.failed = True
        return reason

    def _seed_population(self) -> None:
        """Recorded whole first, so that a run stopped among them evaluates the rest on
        --avo-resume; ``run`` evaluates them as it does every pending record."""
        seeds = sorted(p for p in self.candidates_dir.glob("*.py") if is_candidate(p))
        if not seeds:
            raise pytest.UsageError(f"--avo-evolve: no candidate in {self.candidates_dir} to "
                                    "start from")
        for generation, path in enumerate(seeds):
            self.lineage.add_pending(self.run_id, generation, path.stem, [], START,
                                     f"starting population: {path.name}", path.read_text(), 0.0)

    def _judge_unjudged(self, resuming: bool) -> str | None:
        """The starting population (or what a resumed run left unjudged), all of it before
        any proposal: proposals need parents. Why it stopped early, if the time ran out."""
        waiting = list(self.lineage.pending(self.run_id))
        in_flight: dict[Future[Done], Job] = {}
        reason = None
        while waiting or in_flight:
            while waiting and reason is None and len(in_flight) < self.executor.capacity:
                reason = self._no_time()
                if reason is not None:
                    break
                record = waiting.pop(0)
                if resuming:
                    why = ("was never judged" if record.status == PENDING
                           else f"was not judged ({record.reason})")
                    self.progress.line(f"resuming: {record.name} {why}; evaluating it")
                self._submit(record, in_flight)
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                self._finish(future.result(), in_flight)
        return reason

    def _steady_state(self) -> str:
        """Propose while others are evaluated: one operator step at a time in its own thread,
        as many evaluations as the executor has slots, each result recorded as it arrives
        (so the next step's selection sees it). Stops proposing at the first budget reached
        and lets the evaluations in flight finish (the time budget ends them at its limit)."""
        in_flight: dict[Future[Done], Job] = {}
        #: Each step in flight: its generation, and its lane (which of the executor's
        #: placements it times on: ``placement_for``).
        steps: dict[Future[_Step], tuple[int, int]] = {}
        reason: str | None = None
        while True:
            # Each step becomes one evaluation: never more of both than there are slots.
            while (reason is None and len(steps) < self._parallel
                   and len(in_flight) + len(steps) < self.executor.capacity):
                reason = self._budget_spent(steps=len(steps))
                if reason is None:
                    lane = min(set(range(self._parallel)) - {used for _, used in steps.values()})
                    future, generation = self._start_step({g for g, _ in steps.values()}, lane)
                    steps[future] = generation, lane
            if not steps and not in_flight:
                return reason or "nothing left to do"
            done, _ = wait([*in_flight, *steps], return_when=FIRST_COMPLETED)
            for future in done:
                if future in steps:
                    del steps[future]
                    stop = self._end_step(future.result(), in_flight)
                    reason = reason or stop
                else:
                    self._finish(future.result(), in_flight)

    def _start_step(self, taken: set[int], lane: int) -> tuple[Future[_Step], int]:
        """A step of the next generation free (``taken``: those of the steps in flight), with
        its share of what the money and token budgets leave, timing what it times itself on
        its lane's placement (a free one: no two steps in flight share it)."""
        generation = 1 + max({r.generation for r in self.lineage.records(self.run_id)} | taken)
        island = generation % self.settings.islands
        _, _, cost, tokens = self._spent()
        s = self.settings
        context = VariationContext(
            self.task, self._island_view(island),
            random.Random(f"{s.seed}:{self.run_id}:{generation}"), generation,
            cost_left_usd=(s.cost_budget_usd - cost) / self._parallel
            if s.cost_budget_usd else None,
            tokens_left=(s.token_budget - tokens) // self._parallel if s.token_budget else None,
            spend=functools.partial(self._spend, generation),
            placement=self.executor.placement_for(lane))
        with self._reported_lock:
            self._reported[generation] = (0, 0, 0.0)
        return _in_a_thread(_run_step, self.operator, context, island), generation

    def _end_step(self, step: _Step, in_flight: dict[Future[Done], Job]) -> str | None:
        """Record what the step proposed (and spent) and submit its evaluation; why the run
        stops, if it does."""
        generation = step.context.generation
        exc = step.error
        if isinstance(exc, OperatorExhausted):
            return f"{self.operator.name}: {exc}"
        if isinstance(exc, StepAborted):
            self._settle_spend(generation, exc.tokens_in, exc.tokens_out, exc.cost_usd)
            self._record_aborted_step(generation, exc, step.seconds)
            if isinstance(exc, NoCandidate):
                return None
            clean = isinstance(exc, OperatorBudgetExceeded)
            self.failed = self.failed or not clean
            return (f"{self.operator.name}: {exc}" if clean
                    else f"operator {self.operator.name} failed: {exc}")
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        if exc is not None:  # a plugin's bug must not lose the run: record and stop
            self.failed = True
            return f"operator {self.operator.name} failed: {type(exc).__name__}: {exc}"
        proposal = step.proposal
        assert proposal is not None
        self._settle_spend(generation, proposal.tokens_in, proposal.tokens_out,
                           proposal.cost_usd)
        self._record_events(generation, proposal.events)
        cid = self.lineage.add_pending(
            self.run_id, generation, self._name(generation), proposal.parents,
            self.operator.name, proposal.rationale, proposal.source, step.seconds,
            proposal.tokens_in, proposal.tokens_out, proposal.cost_usd, island=step.island)
        # The step may have taken the time left: then the proposal waits for --avo-resume.
        reason = self._no_time()
        if reason is None:
            self._submit(self._record(cid), in_flight)
        return reason

    def _submit(self, record: Record, in_flight: dict[Future[Done], Job],
                attempt: int = 1) -> None:
        seed = record.starting
        best = self._best(record.island)
        # Only a proposal is cut for speed: the starting population is committed whole.
        cascade = (from_lineage(self.lineage.records(task=self.task.name),
                                commit_bar(best, self.settings.margin),
                                self.settings.cascade_optimism)
                   if not seed and best is not None and self.settings.cascade_optimism
                   else None)
        job = Job(record, self._stage(record), self.eval_settings, cascade, self._time_left(),
                  frozenset(_tree(self.candidates_dir)), attempt)
        in_flight[self.executor.submit(job, self._watch)] = job

    @contextlib.contextmanager
    def _watch(self, job: Job) -> Iterator[Callable[[dict[str, Any]], None]]:
        record = job.record
        again = ", again after a harness error" if job.attempt > 1 else ""
        with self.progress.evaluating(f"{record.name} ({record.rationale}{again})") as show:
            yield show

    def _finish(self, done: Done, in_flight: dict[Future[Done], Job]) -> None:
        """One evaluation came back: retry a harness error once, else judge and record it,
        and commit it if it earned that."""
        job = done.job
        del in_flight[next(f for f, j in in_flight.items() if j is job)]
        record, path, evaluation = job.record, job.path, done.evaluation
        seed = record.starting
        # The very file evaluated must still be the recorded source, or nothing it showed counts.
        tampered = _contents(path) != record.source.encode()
        self._undo_changes(record, set(job.before),
                           {path: record.source.encode()} if seed else {})
        fitness = self._tampering(record, path) if tampered else evaluation.fitness
        if fitness.harness_error and job.attempt == 1:
            self.progress.line(f"{record.name}: {fitness.reason} on {done.worker}; "
                               "evaluating it once more")
            self._submit(record, in_flight, attempt=2)
            return
        if fitness.passed and not seed:
            fitness, commit, why_not = self._earns_commit(done, fitness)
        else:
            commit, why_not = fitness.passed, None
        self.lineage.record_evaluation(
            record.id, passed=fitness.passed, committed=commit, reason=why_not or fitness.reason,
            scores=fitness.scores, geomean=fitness.geomean,
            report=None if tampered else evaluation.report, eval_s=evaluation.wall_s,
            harness_error=fitness.harness_error, cut=fitness.cut, worker=done.worker,
            started_at=done.started_at)
        helpers = {} if seed else self._helpers(record)
        if commit:
            committed = self.candidates_dir / f"{record.name}.py"
            for name, text in helpers.items():  # first: the module imports them
                _write_atomically(self.candidates_dir / name, text)
                self.committed_files[self.candidates_dir / name] = text.encode()
            if not seed:
                _write_atomically(committed, record.source)
            self.committed_files[committed] = record.source.encode()
        if not seed:
            path.unlink(missing_ok=True)
        self._show(self._record(record.id))
        self._finished += 1
        self._migrate()

    def _tampering(self, record: Record, path: Path) -> Fitness:
        """The failure of a candidate whose evaluated file changed, naming that file: a
        starting candidate's own, or the copy staged for a proposal."""
        where = (f"its own file candidates/{self.task.name}/{path.name} (a starting "
                 f"candidate, operator {START!r})" if record.starting
                 else f"its staged copy {path.name}")
        return Fitness(False, f"tampering: {where} changed during its evaluation", {}, 0.0)

    def _earns_commit(self, done: Done, fitness: Fitness) -> tuple[Fitness, bool, str | None]:
        """AVO's rule against the best of the record's island, then the checks a commit
        waits for: the precision drift, and the paired timing against the best (which may
        find the candidate wrong after all). The fitness, whether it is committed, and why
        not when a check refused it."""
        record = done.job.record
        if not accepts(fitness, self._best(record.island), self.settings.margin):
            return fitness, False, None
        drift = self._precision_regression(done.evaluation)
        if drift is not None:
            return fitness, False, drift
        best = self._best_record(record.island)
        rounds = self._paired_rounds()
        if best is None or not rounds:
            return fitness, True, None
        self.progress.line(f"{record.name}: timing it against {best.name} ({rounds} paired "
                           "rounds) before committing it")
        result = self.executor.compare(Pair(
            record, done.job.path, best, self.candidates_dir / f"{best.name}.py",
            self.eval_settings, rounds, self.settings.margin, self._time_left(), done.worker))
        self.lineage.add_event(self.run_id, "paired", {"record": record.id, "best": best.id,
                                                        **result.to_json()})
        self.progress.line(f"{record.name}: {result.summary}")
        if result.verdict != "error":
            return fitness, commits(result, self.settings.margin), (
                None if commits(result, self.settings.margin) else f"paired: {result.summary}")
        if (result.failure or {}).get("who") == "candidate":
            return Fitness(False, f"paired timing: {result.summary}", fitness.scores,
                           0.0), False, None
        # No verdict on the candidate (the harness or the best failed): its evaluation stands.
        return fitness, True, None

    def _paired_rounds(self) -> int:
        """``--avo-paired-rounds``; auto: 3 on a GPU, none in the interpreter, whose wall
        clock is not the GPU's speed the rule protects."""
        rounds = self.settings.paired_rounds
        return rounds if rounds is not None else 3 if self.eval_settings.device == "cuda" else 0

    def _precision_regression(self, evaluation: Evaluation) -> str | None:
        """Whether the candidate's error grew past ``--avo-precision-drift`` times the
        starting candidates' on the same configurations (precision.py)."""
        if not self.settings.precision_drift or evaluation.report is None:
            return None
        seeds = [r.result.entry for r in self.lineage.records(self.run_id)
                 if r.starting and r.status == PASSED]
        return precision.regression(candidate_entry(evaluation.report) or {},
                                    [e for e in seeds if e], self.settings.precision_drift)

    def _stage(self, record: Record) -> Path:
        """The file ``record`` is evaluated from, holding its source: a seed's own file in
        candidates/<task>/, any other candidate's in the staging folder."""
        if record.starting:
            path = self.candidates_dir / f"{record.name}.py"
            if _contents(path) == record.source.encode():
                return path
        else:
            path = self.staging / f"{record.name}.py"
            # What its parents import beside them (a seed's helpers, a committed one's), then
            # the helpers it came with: a built-in operator's mutation comes with none.
            for name, text in (self._beside() | self._helpers(record)).items():
                _write_atomically(path.parent / name, text)
        _write_atomically(path, record.source)
        return path

    def _beside(self) -> dict[str, str]:
        """The helper modules in candidates/<task>/ now, by name."""
        return {p.name: p.read_text() for p in helper_paths(self.candidates_dir)}

    def _helpers(self, record: Record) -> dict[str, str]:
        """The helper modules (``_*.py``) a proposal came with: its generation's ``helpers``
        event. Only plain ``_name.py`` names count: a name is never a path."""
        found: dict[str, str] = {}
        for event in self.lineage.events(record.run_id, "helpers"):
            files = event.get("files")
            if event.get("generation") == record.generation and isinstance(files, dict):
                found.update({name: text for name, text in files.items()
                              if isinstance(text, str) and HELPER_NAME.fullmatch(str(name))})
        return found

    def _record_aborted_step(self, generation: int, exc: StepAborted, operator_s: float) -> None:
        """A step without a candidate still cost something: keep that (its spend is in the
        spend table already), and what it noted. A step that the run goes on after is always
        a generation (so the budget advances); one that stops the run as failed (the API
        failing, Ctrl-C) is not: the run resumed later still has that generation to use."""
        self._record_events(generation, exc.events)
        if type(exc) is StepAborted:
            self.lineage.add_event(self.run_id, "step-aborted", {
                "generation": generation, "reason": str(exc), "tokens_in": exc.tokens_in,
                "tokens_out": exc.tokens_out, "cost_usd": exc.cost_usd})
            return
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
        self.progress.result(record, self._best() or 0.0, self._best_start(),
                             time.monotonic() - self.started, self._budget_left())

    def _name(self, generation: int) -> str:
        return f"evo_r{self.run_id}_g{generation:03d}"

    def _guard_committed_files(self) -> None:
        """Note what each committed file holds as the run starts, rewriting those a kill left
        missing. A user's edit made before the run is left as it is (and guarded as it is)."""
        for leftover in self.candidates_dir.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        # The latest committed record of a name wins (a seed may be committed by every run).
        latest = {self.candidates_dir / f"{r.name}.py": r
                  for r in self.lineage.records(task=self.task.name) if r.committed}
        for name in self._beside():  # the seeds' helpers: guarded as their modules are
            self.committed_files[self.candidates_dir / name] = (
                self.candidates_dir / name).read_bytes()
        for record in [r for r in latest.values() if not r.starting]:
            for name, text in self._helpers(record).items():  # as the module needs them
                if not (self.candidates_dir / name).exists():
                    _write_atomically(self.candidates_dir / name, text)
                self.committed_files[self.candidates_dir / name] = (
                    self.candidates_dir / name).read_bytes()
        for path, record in latest.items():
            if not path.exists():
                _write_atomically(path, record.source)
                self.progress.line(f"restored {self._shown(path)} from the lineage: it was "
                                   "missing")
            held = path.read_bytes()
            if held != record.source.encode():
                self.progress.line(f"warning: {self._shown(path)} differs from the version the "
                                   "lineage committed; left as it is")
            self.committed_files[path] = held

    def _undo_changes(self, record: Record, before: set[Path], own: dict[Path, bytes]) -> None:
        """Undo what evaluating ``record`` did to candidates/<task>/: files that were not there
        go; committed files (and ``own``, a seed's file) get back what they held."""
        guarded = self.committed_files | own
        removed: list[Path] = []
        for path in sorted(_tree(self.candidates_dir) - before - guarded.keys()):
            if any(parent in removed for parent in path.parents):
                continue
            _remove(path)
            removed.append(path)
            self.progress.line(f"removed {self._shown(path)}: it appeared during the evaluation "
                               f"of {record.name}")
        for path, data in guarded.items():
            now = _contents(path)
            if now == data:
                continue
            if now is None and os.path.lexists(path):
                _remove(path)  # not a plain file any more: a folder or a link
            _write_atomically(path, data)
            what = "it vanished" if now is None else "its contents changed"
            self.progress.line(f"restored {self._shown(path)}: {what} during the evaluation of "
                               f"{record.name}")

    def _shown(self, path: Path) -> Path:
        """``path`` as the user names it: from the project root (candidates/<task>/...)."""
        return path.relative_to(self.candidates_dir.parent.parent)

    def _record(self, cid: int) -> Record:
        return next(r for r in self.lineage.records(self.run_id) if r.id == cid)

    def _island_view(self, island: int) -> list[Record]:
        """What an island's step may read: the task's earlier runs, and of this run the
        seeds, the island's own candidates and those migrated to it."""
        migrants = self._migrants(island)
        return [r for r in self.lineage.records(task=self.task.name)
                if r.run_id != self.run_id or r.starting or r.island == island
                or r.id in migrants]

    def _migrants(self, island: int) -> set[int]:
        return {e["record"] for e in self.lineage.events(self.run_id, "migration")
                if island in e["to"]}

    def _best(self, island: int | None = None) -> float | None:
        """The best committed geomean of the run, or of one island (the commit bar's
        reference for its candidates)."""
        best = self._best_record(island)
        return best.geomean if best is not None else None

    def _best_record(self, island: int | None = None) -> Record | None:
        """The run's (or the island's) best committed record: also the paired timing's
        rival."""
        records = (self.lineage.records(self.run_id) if island is None
                   else self._island_view(island))
        return best_committed([r for r in records if r.run_id == self.run_id])

    def _migrate(self) -> None:
        """Every ``--avo-migration`` evaluations, the run's best committed candidate joins
        the islands that lack it: a parent there, and their commit bar."""
        islands = self.settings.islands
        if islands < 2 or self._finished % self.settings.migration:
            return
        best = best_committed([r for r in self.lineage.records(self.run_id) if not r.starting])
        if best is None:
            return
        to = [i for i in range(islands) if i != best.island and best.id not in
              self._migrants(i)]
        if to:
            self.lineage.add_event(self.run_id, "migration", {
                "record": best.id, "name": best.name, "from": best.island, "to": to})
            self.progress.line(f"migration: {best.name} (island {best.island}, geomean "
                               f"{best.geomean:.4g}) joins island(s) "
                               f"{', '.join(map(str, to))}")

    def _best_start(self) -> Record | None:
        """The run's fastest starting candidate: what its speedups are against."""
        return best_start(self.lineage.records(self.run_id))

    def _spent(self) -> tuple[int, float, float, int]:
        """Generations, seconds, dollars and tokens so far; money and tokens from the
        lineage's spend table, which every paid call reached as it was made (so a run
        resumed after a kill counts what the killed one spent)."""
        records = [r for r in self.lineage.records(self.run_id) if not r.starting]
        tokens_in, tokens_out, cost = self.lineage.spent(self.run_id)
        return len(records), time.monotonic() - self.started, cost, tokens_in + tokens_out

    def _spend(self, generation: int, tokens_in: int, tokens_out: int, cost_usd: float) -> None:
        """One paid call of the step in flight, into the lineage at once."""
        self.lineage.add_spend(self.run_id, generation, tokens_in, tokens_out, cost_usd)
        with self._reported_lock:
            seen_in, seen_out, seen_cost = self._reported.get(generation, (0, 0, 0.0))
            self._reported[generation] = (seen_in + tokens_in, seen_out + tokens_out,
                                          seen_cost + cost_usd)

    def _settle_spend(self, generation: int, tokens_in: int, tokens_out: int,
                      cost_usd: float) -> None:
        """Record what a step's totals say it spent beyond what it reported call by call
        (all of it, for an operator that never reports)."""
        with self._reported_lock:
            seen_in, seen_out, seen_cost = self._reported.pop(generation, (0, 0, 0.0))
        rest = (max(0, tokens_in - seen_in), max(0, tokens_out - seen_out),
                max(0.0, cost_usd - seen_cost))
        if rest[0] or rest[1] or rest[2] > 1e-12:
            self.lineage.add_spend(self.run_id, generation, *rest)

    def _time_left(self) -> float | None:
        """Seconds the time budget leaves; None without one."""
        if not self.settings.time_budget_s:
            return None
        return self.settings.time_budget_s - (time.monotonic() - self.started)

    def _no_time(self) -> str | None:
        """Why no evaluation may start now, if the time budget says so. The estimate is the
        longest of this run's evaluations that timed every configuration: a proposal worth
        having is timed in full, and one ended at the limit is lost, so the estimate errs
        long. Failed evaluations and ones killed (a hang) do not count, nor do the starting
        candidates' once a proposal's counts: they paid for the run's cold compiles and the
        machine's calibration, which no later evaluation pays again. A proposal cut as
        slower after timing at least half the configurations counts as it would have taken
        timed in full (its seconds scaled by configurations over those timed)."""
        left = self._time_left()
        if left is None:
            return None
        if left <= 0:
            return f"time budget reached ({time.monotonic() - self.started:,.0f} s)"
        total = len(self.task.bench_configs(cuda=self.eval_settings.device == "cuda"))
        records = [r for r in self.lineage.records(self.run_id) if r.eval_s]
        full = {r.id: r.eval_s or 0.0 for r in records if r.status == PASSED}
        proposals = {r.id: s for r in records if not r.starting and (s := (
            full.get(r.id) if r.status == PASSED else _in_full(r, total))) is not None}
        longest = max((proposals or full).values(), default=0.0)
        if longest > left:
            whose = "proposals" if proposals else "evaluations"
            return (f"time budget: {left:,.0f} s left, less than an evaluation takes "
                    f"(the longest of this run's {whose}: {longest:,.0f} s)")
        return None

    def _budget_spent(self, steps: int = 0) -> str | None:
        """Why no step may start now; ``steps`` in flight count as generations."""
        generations, _, cost, tokens = self._spent()
        s = self.settings
        if generations + steps >= s.generations:
            return f"generation budget reached ({generations + steps})"
        no_time = self._no_time()
        if no_time is not None:
            return no_time
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
        start = self._best_start()
        seed = (start.geomean or 0.0) if start is not None else 0.0
        best = self._best() or 0.0
        failed = sum(r.status == FAILED for r in records)
        faults = sum(r.status == HARNESS_ERROR for r in records)
        cut = sum(r.status in (CUT_SLOWER, CUT_TIME) for r in records)
        waiting = sum(r.status == PENDING for r in records)
        self.progress.table(f"committed versions of run {self.run_id} ({self.task.name})",
                            [r for r in records if r.committed], seed)
        speedup = (f"{best / seed:.3f}x {start.name}, the best starting candidate"
                   if start is not None and seed else "no passing starting candidate")
        clock = "interpreter wall time, not GPU speed" if self.eval_settings.device == "cpu" \
            else "GPU device time"
        _, _, cost, tokens = self._spent()
        spent = f" Operator spent {tokens:,} tokens, ${cost:.2f}." if tokens or cost else ""
        unjudged = (f", {faults} not judged for a harness error (--avo-resume evaluates "
                    "them again)" if faults else "")
        cuts = f", {cut} cut short" if cut else ""
        left = f", {waiting} left for --avo-resume to evaluate" if waiting else ""
        self.progress.line(f"avo: stopped: {reason}. {len(records) - waiting} evaluated, "
                           f"{failed} failed{cuts}{unjudged}{left}; best geomean {best:.4g} "
                           f"TFLOP/s ({speedup}; "
                           f"{clock}).{spent}")


@dataclass(frozen=True)
class _Step:
    """One operator step's outcome, as the operator's thread hands it to the controller."""

    context: VariationContext
    island: int
    seconds: float
    proposal: Proposal | None = None
    error: BaseException | None = None


def _in_a_thread(fn: Callable[..., _Step], *args: Any) -> Future[_Step]:
    """Run a step in a daemon thread: on Ctrl-C the run stops without waiting for a step in
    flight (a model call may take minutes); what it spent is in the lineage already, call by
    call, and its generation is left for --avo-resume."""
    future: Future[_Step] = Future()

    def work() -> None:
        future.set_result(fn(*args))

    threading.Thread(target=work, name="avo-step", daemon=True).start()
    return future


def _run_step(operator: Operator, context: VariationContext, island: int) -> _Step:
    t0 = time.monotonic()
    try:
        proposal = operator.propose(context)
    except BaseException as exc:  # the controller decides what it means
        return _Step(context, island, time.monotonic() - t0, error=exc)
    return _Step(context, island, time.monotonic() - t0, proposal=proposal)


def print_lineage(config: pytest.Config) -> int:
    """``pytest --avo-lineage``: every run of the store, as tables."""
    store = settings_of(config).evolve.store
    if not (store / "lineage.sqlite").exists():
        raise pytest.UsageError(f"--avo-lineage: no lineage store at {store}")
    lineage = Lineage(store)
    try:
        records = lineage.records()
        progress = Progress()
        for run_id in sorted({r.run_id for r in records}):
            run = [r for r in records if r.run_id == run_id]
            start = best_start(run)
            progress.table(f"run {run_id}", run, (start.geomean or 0.0) if start else 0.0)
        if not records:
            progress.line("the lineage is empty")
    finally:
        lineage.close()
    return 0


def _contents(path: Path) -> bytes | None:
    """A plain file's bytes; None if it is missing, a link or not a file."""
    return path.read_bytes() if path.is_file() and not path.is_symlink() else None


def _tree(folder: Path) -> set[Path]:
    """Everything under ``folder`` (links not followed)."""
    return set(folder.rglob("*")) if folder.is_dir() else set()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str | bytes) -> None:
    """UTF-8, as the lineage hashes a source."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's is 0600: a committed file reads as any other
    with os.fdopen(fd, "wb") as out:
        out.write(text.encode() if isinstance(text, str) else text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _in_full(record: Record, configs: int) -> float | None:
    """What a proposal cut as slower would have taken timed on all ``configs``, if it was
    timed on at least half of them (its ``scores``); None otherwise."""
    timed = len(record.scores or {})
    if record.status != CUT_SLOWER or not record.eval_s or 2 * timed < configs:
        return None
    return record.eval_s * configs / timed
