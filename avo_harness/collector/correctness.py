"""The correctness item: hypothesis over the task's whole input space, boundary cases first.

A wrong candidate fails with the smallest wrong input hypothesis can shrink to, the
error it made there and a replay command (``results.Failure.review``); a replay
(``--avo-replay``) checks that one input alone.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..judge.checker import Verdict, check_case, fault_verdict, harness_verdict
from ..judge.machine import PRIVATE
from ..judge.sandbox import CandidateFault, HarnessFault
from ..judge.scan import scan_file
from ..options import REPLAY_FLAG
from ..results import format_failure
from ..tasks import Case
from .compile_ahead import compile_ahead, compile_workers, in_compile_order

if TYPE_CHECKING:
    from .candidate import CandidateFile


class CaseFailure(AssertionError):
    """One input on which the candidate is wrong; hypothesis shrinks to the smallest."""

    def __init__(self, case: Case | None, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.case = case
        self.verdict = verdict


class CorrectnessItem(pytest.Item):
    """Hypothesis over the task's inputs; fails with the minimal failing input."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file: CandidateFile = self.parent  # type: ignore[assignment]
        self.examples_run = 0
        self.details: dict[str, Any] = {}
        #: Hypothesis's seed for this item: private, and the same for the cases planned
        #: ahead (``_planned_cases``) and the search.
        self._seed = PRIVATE.randrange(2**32)

    def runtest(self) -> None:
        file = self.file
        findings = scan_file(file.path, file.task.forbidden, [file.path.parents[2]])
        if findings:
            self._fail(None, Verdict(False, findings[0].rule, "the source "
                                     + "; ".join(str(f) for f in findings)))
        replay = file.settings.replay
        workers = compile_workers(file.settings.cuda)
        ahead = None
        if replay is None and workers:
            # The candidate's own process starts there too, beside its siblings; if it
            # could not, starting it again below says why.
            with file.phases.measure("compile", file.counters):
                ahead = compile_ahead(file, self._planned_cases(), workers)
        try:
            self._correctness(replay)
        finally:
            if ahead is not None:  # the siblings' last compiles, if the checks outran them
                with file.phases.measure("compile", file.counters):
                    file.compile_ahead = ahead.finish()
        self.details = {"outcome": "passed", "examples": self.examples_run}

    def _correctness(self, replay: Case | None) -> None:
        file = self.file
        boundary = len(file.task.boundary_cases(large=file.settings.cuda))
        file.live.update(phase="correctness", cases_done=0, force=True,
                         cases_total=1 if replay is not None else boundary + file.settings.examples)
        with file.phases.measure("correctness", file.counters):
            self._start()
            if replay is not None:
                try:
                    self._check(replay)
                except CaseFailure as failure:
                    self._fail(failure.case, failure.verdict)
            else:
                self._hypothesis()

    def _start(self) -> None:
        try:
            self.file.sandbox().start()
        except CandidateFault as fault:
            self._fail(None, fault_verdict(fault))
        except HarnessFault as exc:
            self._fail(None, harness_verdict(exc, "starting the sandbox"))

    def _planned_cases(self) -> list[Case]:
        """Every input shape this file's items will call the candidate on, as far as it can
        be known ahead: the boundary cases, the examples hypothesis will draw (it draws the
        same ones again under the same seed while every example passes), and the
        benchmark configurations; in the order they are best compiled in
        (``in_compile_order``)."""
        from hypothesis import Phase, given, seed

        task, large = self.file.task, self.file.settings.cuda
        drawn: list[Case] = []
        examples = self.file.settings.examples
        if examples:
            @seed(self._seed)
            @_search_settings(examples, (Phase.generate,))
            @given(task.cases(large=large))
            def record(case: Case) -> None:
                drawn.append(case)

            record()
        benches = [b.case for b in task.bench_configs(cuda=large)]
        return in_compile_order(task, task.boundary_cases(large=large) + drawn, benches)

    def _hypothesis(self) -> None:
        task, large = self.file.task, self.file.settings.cuda
        examples = self.file.settings.examples
        boundary = task.boundary_cases(large=large)
        failure = self._search(boundary, examples)
        if failure is not None and failure.verdict.rule == "tolerance" and examples and \
                _unseeded(failure.case) in map(_unseeded, boundary):
            # Hypothesis does not shrink an explicit example: search once more without
            # them and report the smaller of the two wrong inputs.
            smaller = self._search([], examples, only="tolerance")
            if smaller is not None and \
                    task.bytes_moved(smaller.case) < task.bytes_moved(failure.case):
                failure = smaller
        if failure is not None:
            self._fail(failure.case, failure.verdict)

    def _search(self, explicit: list[Case], examples: int,
                only: str | None = None) -> CaseFailure | None:
        """The first failure on ``explicit``, else the shrunk failure of ``examples`` drawn
        inputs (none drawn when it is 0); None if every input passed. With ``only``,
        failures by other rules count as passes, and a failure hypothesis could not
        reproduce (reported as flaky) counts as none."""
        from hypothesis import Phase, example, given, seed

        # Drawn seeds are mixed with a private salt, so no input of a run can be known
        # in advance; the failure report carries the mixed seed, so replays are exact.
        salt = PRIVATE.randrange(2**31)
        phases = ((Phase.explicit,) if explicit else ()) + \
            ((Phase.generate, Phase.shrink) if examples else ())

        @seed(self._seed)
        @_search_settings(examples, phases)
        @given(self.file.task.cases(large=self.file.settings.cuda))
        def correct_on(case: Case) -> None:
            try:
                self._check({**case, "seed": (case["seed"] ^ salt) & 0x7FFFFFFF})
            except CaseFailure as failure:
                if only is None or failure.verdict.rule == only:
                    raise

        for case in reversed(explicit):
            correct_on = example(case)(correct_on)
        try:
            correct_on()
        except BaseException as exc:
            failure = _find_case_failure(exc)
            if failure is None:
                raise
            return failure if only is None or failure is exc else None
        return None

    def _check(self, case: Case) -> None:
        self.examples_run += 1
        self.file.live.update(cases_done=self.examples_run)
        verdict = check_case(self.file.task, self.file.sandbox(), case, self.file.device)
        if not verdict.passed:
            raise CaseFailure(case, verdict)

    def _fail(self, case: Case | None, verdict: Verdict) -> None:
        self.file.correctness_failed = True
        failure: dict[str, Any] = {"rule": verdict.rule, "message": verdict.message}
        if case is not None:
            failure["case"] = case
            failure["replay"] = self.replay_command(case)
        failure.update({k: v for k, v in verdict.to_json().items() if k not in failure
                        and k not in ("passed",)})
        self.details = {"outcome": "failed", "examples": self.examples_run, "failure": failure}
        raise CaseFailure(case, verdict)

    def replay_command(self, case: Case) -> str:
        return (f"pytest {shlex.quote(self.nodeid)} {REPLAY_FLAG} "
                f"{shlex.quote(json.dumps(case, sort_keys=True))}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        exc = excinfo.value
        if not isinstance(exc, CaseFailure):
            return str(super().repr_failure(excinfo))
        return format_failure(self.file.path, self.details.get("failure", {}))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}::correctness"


def _search_settings(examples: int, phases: tuple[Any, ...]) -> Any:
    """The one hypothesis profile of the correctness search (and of planning its cases)."""
    from hypothesis import HealthCheck, settings

    # hypothesis needs max_examples >= 1 even when only explicit examples run.
    return settings(max_examples=max(1, examples), deadline=None, database=None,
                    report_multiple_bugs=False, suppress_health_check=list(HealthCheck),
                    phases=phases, print_blob=False)


def _unseeded(case: Case) -> Case:
    return {k: v for k, v in case.items() if k != "seed"}


def _find_case_failure(exc: BaseException) -> CaseFailure | None:
    """Our failure, also when hypothesis wraps it (e.g. in a flakiness group)."""
    if isinstance(exc, CaseFailure):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_case_failure(inner)
        if found is not None:
            return found
    return None
