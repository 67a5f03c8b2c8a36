"""The agentic variation operator: each ``propose`` is one agent session.

Before the session the supervisor may review the trajectory and steer. In the session the
model reads, drafts, evaluates and repairs until it submits a version that passed. When the
step's own limits run out first, the fastest version that passed is submitted for it, or, if
none passed, the step ends without a candidate (the loop records its cost and goes on); so
does a step whose call the step's time or the context window cut short. When
the run's budget runs out, the run ends cleanly; what the step spent is recorded either way.

What outlives a step goes to the lineage as events of its generation, however it ends: the
entries it wrote in the run's notebook (``notebook``, read by every later step of the run)
and the helper modules of its submission (``helpers``, read back as that candidate's).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from ..evolve.evaluate import EvalSettings, settings_from
from ..evolve.lineage import Lineage, Record, best_committed
from ..evolve.operators import (
    Event,
    NoCandidate,
    OperatorBudgetExceeded,
    Proposal,
    StepAborted,
    VariationContext,
)
from ..evolve.progress import Progress
from ..options import AgentSettings, settings_of
from ..tasks import Task, helper_paths
from .budget import Limits, Meter, OutOfBudget
from .client import APIFailure, MessagesClient, StepEnd, Unavailable
from .context import window_of
from .knowledge import Knowledge
from .pricing import Price, price_of
from .prompts import opening, system_prompt
from .session import Declined, Session
from .supervisor import Supervisor
from .tools import Submission, Workspace


def build(config: pytest.Config) -> AgentOperator:
    """The ``anthropic`` operator's factory; a missing key or SDK is a one-line usage error."""
    settings = settings_of(config).agent
    log = Progress().line
    try:
        client = MessagesClient(settings.model, log=log)
    except Unavailable as exc:
        raise pytest.UsageError(f"--avo-operator anthropic: {exc}") from None
    price, known = price_of(settings.model)
    if not known:
        log(f"avo: no price known for {settings.model}; costs are counted at the dearest "
            "known rates, so budgets stop early")
    evolve = settings_of(config).evolve
    return AgentOperator(settings, client, price, settings_from(config), evolve.store,
                         Knowledge.load(evolve.task), log)


class AgentOperator:
    name = "anthropic"
    #: Each step has its own meter, workspace, session and scratch folder (by generation),
    #: so the loop may run one per free slot; the supervisor, shared, is steered under a lock.
    concurrent_steps = True

    def __init__(self, settings: AgentSettings, client: MessagesClient, price: Price,
                 eval_settings: EvalSettings, store: Path, knowledge: Knowledge,
                 log: Callable[[str], None]) -> None:
        self.settings = settings
        self.client = client
        self.price = price
        self.eval_settings = eval_settings
        self.store = store
        self.scratch = store / "staging" / "agent"
        self.knowledge = knowledge
        self.log = log
        self.supervisor = Supervisor(client, self.name, settings.stagnation)
        self._steering = threading.Lock()

    def propose(self, context: VariationContext) -> Proposal:
        s = self.settings
        limits = Limits(s.turns, s.step_tokens, s.step_usd, s.step_time_s,
                        context.cost_left_usd, context.tokens_left)
        meter = Meter(self.price, limits, on_spend=context.spend)
        events: list[Event] = []
        notebook, helpers = self._history(context.task, context.records)
        workspace = Workspace(context.task, context.records, self.eval_settings, self.scratch,
                              self.knowledge, f"g{context.generation:03d}", self.log,
                              helpers=helpers, deadline=meter.deadline,
                              placement=context.placement)
        prompt = system_prompt(context.task, self.knowledge, self.eval_settings.device == "cuda")
        session = Session(self.client, prompt, workspace, meter, self.log,
                          window_of(self.client.model))
        self.log(f"gen {context.generation:>3} agent ({self.client.model}) at work")

        def kept() -> tuple[Event, ...]:
            """The step's events: the supervisor's, and the notes it wrote."""
            return tuple(events) + tuple(
                Event("notebook", " ".join(text.split())[:120], {"text": text})
                for text in workspace.notes)

        try:
            with self._steering:
                event = self.supervisor.steer(context.records, meter)
                directive = self.supervisor.directive
            events += [event] if event is not None else []
            submission = session.run(opening(context.generation, context.records, limits,
                                             directive, notebook))
        except (OutOfBudget, StepEnd) as exc:
            submission = self._fallback(workspace, session, str(exc))
            if submission is None:
                run = isinstance(exc, OutOfBudget) and exc.run
                kind = OperatorBudgetExceeded if run else NoCandidate
                raise kind(f"{exc}; no version passed in this step", **meter.spent(),
                           events=kept()) from None
        except Declined as exc:
            raise NoCandidate(str(exc), **meter.spent(), events=kept()) from None
        except APIFailure as exc:
            raise StepAborted(str(exc), **meter.spent(), events=kept()) from None
        except KeyboardInterrupt:
            # What the step spent is kept: the loop records it before the run stops.
            raise StepAborted("interrupted (Ctrl-C) in the middle of an agent step",
                              **meter.spent(), events=kept()) from None
        finally:
            workspace.close()
        files = submission.helpers
        stored = (Event("helpers", f"{len(files)} helper modules: {', '.join(files)}",
                        {"files": files}),) if files else ()
        return Proposal(submission.source, submission.parents, submission.rationale,
                        **meter.spent(), events=kept() + stored)

    def _history(self, task: Task, records: list[Record]
                 ) -> tuple[list[dict[str, Any]], dict[int, dict[str, str]]]:
        """This run's notebook, and the helper modules of the lineage's candidates: a seed's
        are the ``_*.py`` files beside it in ``candidates/<task>/``, a proposal's are the
        ``helpers`` event of its generation."""
        beside = {p.name: p.read_text() for p in helper_paths(
            self.eval_settings.rootdir / "candidates" / task.name)}
        helpers = {r.id: beside for r in records if r.starting and beside}
        if not (self.store / "lineage.sqlite").exists():
            return [], helpers
        lineage = Lineage(self.store)
        try:
            for run_id in sorted({r.run_id for r in records}):
                stored = {e.get("generation"): e.get("files") for e in
                          lineage.events(run_id, "helpers")}
                helpers.update({r.id: stored[r.generation] for r in records
                                if r.run_id == run_id and isinstance(stored.get(r.generation),
                                                                     dict)})
            run = lineage.latest_run(task.name)
            notebook = lineage.events(run, "notebook") if run is not None else []
        finally:
            lineage.close()
        return notebook, helpers

    @staticmethod
    def _fallback(workspace: Workspace, session: Session, why: str) -> Submission | None:
        """At a limit, the fastest version that passed in this step, submitted for the agent."""
        passing = workspace.passing()
        if not passing:
            return None
        number, evaluation = passing[0]
        best = best_committed(workspace.records)
        rationale = (f"submitted by the operator when the step ran out ({why}): attempt "
                     f"{number}, the fastest that passed here (geomean "
                     f"{evaluation.fitness.geomean:.4g})")
        if session.notes:
            rationale += "; the agent's last note: " + " ".join(session.notes[-1].split())[:400]
        attempt = workspace.attempts[number - 1]
        return Submission(attempt.source, [best.id] if best is not None else [], rationale,
                          number, dict(attempt.helpers))
