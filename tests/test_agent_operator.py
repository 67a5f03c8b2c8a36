"""The operator: one agent step per propose, what it returns or raises at each kind of end,
with the spend and the events (the supervisor's, the notebook's, a submission's helpers)
always carried to the loop, and the run's notebook and the helpers read back from the
lineage."""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from avo_harness.agent import operator as operator_module
from avo_harness.agent import tools
from avo_harness.agent.client import MessagesClient
from avo_harness.agent.fake_server import FakeMessagesAPI
from avo_harness.agent.knowledge import Knowledge
from avo_harness.agent.operator import AgentOperator
from avo_harness.agent.pricing import PRICES
from avo_harness.agent.settings import AgentSettings
from avo_harness.evolve.evaluate import EvalSettings, Evaluation, Placement
from avo_harness.evolve.fitness import Fitness
from avo_harness.evolve.lineage import Lineage, Record, source_hash
from avo_harness.evolve.operators import (NoCandidate, OperatorBudgetExceeded, StepAborted,
                                          VariationContext)
from avo_harness.options import resolve_operator
from avo_harness.tasks import get_task

USAGE = {"input_tokens": 1_000, "output_tokens": 100}  # $0.006 on claude-opus-5-5


def record(id: int, source: str, committed: bool, geomean: float | None,
           operator: str) -> Record:
    return Record(id, 1, id - 1, f"c{id}", [1] if id > 1 else [], operator, f"step {id}",
                  source, source_hash(source), "passed" if geomean else "failed", committed,
                  None, None, geomean, None, 0.0, 0.0)


@pytest.fixture
def propose(tmp_path: Path, honest_attention: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run one step against a fake server playing ``script``; returns the server too."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    servers: list[FakeMessagesAPI] = []

    def run(script: list[dict[str, Any]], *, turns: int = 40, stagnation: int = 0,
            cost_left: float | None = None, failed_steps: int = 0,
            seconds: float = 600.0, placement: Placement = Placement()
            ) -> tuple[Any, FakeMessagesAPI]:
        api = FakeMessagesAPI(script).start()
        servers.append(api)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        settings = AgentSettings("claude-opus-5-5", turns, 10**7, 5.0, seconds, stagnation)
        operator = AgentOperator(settings, MessagesClient(settings.model, log=lambda s: None),
                                 PRICES[settings.model],
                                 EvalSettings("cpu", 2, 60, 120, 8, tmp_path),
                                 tmp_path / ".avo", Knowledge.load("attention"), lambda line: None)
        records = [record(1, honest_attention, True, 1e-4, "seed")]
        records += [record(2 + i, f"# {i}\n" + honest_attention, False, None, "anthropic")
                    for i in range(failed_steps)]
        context = VariationContext(get_task("attention"), records, random.Random(0),
                                   len(records), cost_left_usd=cost_left,
                                   placement=placement)
        try:
            return operator.propose(context), api
        except StepAborted as exc:
            return exc, api

    yield run
    for api in servers:
        api.stop()


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"reply": [{"type": "tool_use", "name": tool, "input": args}], "usage": USAGE}


def test_at_the_step_limit_the_fastest_passing_draft_is_submitted(propose: Any,
                                                                  honest_attention: str) -> None:
    draft = "# one matmul\n" + honest_attention
    script = [call("write_candidate", source=draft),
              {**call("evaluate_candidate"), "reply": [
                  {"type": "text", "text": "Evaluating my single-matmul draft."},
                  {"type": "tool_use", "name": "evaluate_candidate", "input": {}}]}]
    proposal, api = propose(script, turns=2)
    assert proposal.source == draft and proposal.parents == [1]
    assert proposal.rationale.startswith("submitted by the operator when the step ran out "
                                         "(turn limit reached (2 calls)): attempt 1, the "
                                         "fastest that passed here")
    assert proposal.rationale.endswith("the agent's last note: Evaluating my single-matmul "
                                       "draft.")
    assert (proposal.tokens_in, proposal.tokens_out) == (2_000, 200)
    assert proposal.cost_usd == pytest.approx(0.012)
    assert proposal.events == () and api.left == 0


def test_the_step_times_its_drafts_where_the_loop_placed_it(
        propose: Any, honest_attention: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The slot's GPU and its lock: a draft's evaluation and the workbench time under the
    lock the search's evaluations on that GPU hold, never beside them."""
    placement = Placement((("CUDA_VISIBLE_DEVICES", "1"),), tmp_path / "gpu1.lock")
    workspaces: list[tools.Workspace] = []
    built = operator_module.Workspace
    monkeypatch.setattr(operator_module, "Workspace", lambda *a, **k: workspaces.append(
        built(*a, **k)) or workspaces[-1])
    placed: list[Placement] = []

    def evaluate(path: Path, settings: EvalSettings, **kwargs: Any) -> Evaluation:
        placed.append(kwargs["placement"])
        return Evaluation(Fitness(False, "wrong", {}, 0.0), None, 0.0)

    monkeypatch.setattr(tools, "evaluate", evaluate)
    script = [call("write_candidate", source="# draft\n" + honest_attention),
              call("evaluate_candidate")]
    exc, _ = propose(script, turns=2, placement=placement)
    assert isinstance(exc, NoCandidate)
    assert placed == [placement]
    (workspace,) = workspaces
    assert workspace.placement == workspace.bench.placement == placement


def test_nothing_passed_by_the_step_limit_is_no_candidate_with_its_cost(propose: Any) -> None:
    exc, _ = propose([call("read_lineage")], turns=1)
    assert isinstance(exc, NoCandidate)
    assert str(exc) == "turn limit reached (1 calls); no version passed in this step"
    assert (exc.tokens_in, exc.tokens_out, exc.cost_usd) == (1_000, 100, pytest.approx(0.006))


def test_the_supervisor_steers_and_the_run_budget_stops_the_step(propose: Any) -> None:
    script = [{"reply": [{"type": "text", "text": "Try a persistent grid."}], "usage": USAGE},
              {**call("read_lineage"), "expect": "Try a persistent grid.",
               "usage": {"input_tokens": 40_000, "output_tokens": 100}}]
    exc, api = propose(script, stagnation=2, failed_steps=2, cost_left=0.2)
    assert isinstance(exc, OperatorBudgetExceeded)
    assert str(exc).startswith("run cost budget: $0.0320 left cannot pay for another call")
    assert exc.cost_usd == pytest.approx(0.006 + 0.162)
    (event,) = exc.events
    assert event.kind == "supervisor" and event.detail["directive"] == "Try a persistent grid."
    assert event.summary == "stagnation: 2 steps without a committed improvement (best " \
                            "geomean 0.0001)"
    assert "tools" not in api.requests[0] and "tools" in api.requests[1]


def test_an_api_failure_ends_the_step_with_what_it_spent(propose: Any) -> None:
    exc, _ = propose([call("read_lineage"), {"status": 404, "message": "model: not found"}])
    assert type(exc) is StepAborted
    assert str(exc) == "anthropic API: 404 not_found_error: model: not found"
    assert exc.cost_usd == pytest.approx(0.006)


def test_an_overflow_answer_ends_the_step_not_the_run(propose: Any) -> None:
    exc, _ = propose([call("read_lineage"), {"status": 400, "message": "prompt is too long"}])
    assert isinstance(exc, NoCandidate) and "prompt is too long" in str(exc)
    assert exc.cost_usd == pytest.approx(0.006)


def test_a_slow_reply_is_cut_at_the_step_time_limit(propose: Any) -> None:
    started = time.monotonic()
    exc, _ = propose([call("read_lineage"), {**call("read_lineage"), "delay": 4}], seconds=1.5)
    assert time.monotonic() - started < 3.5
    assert isinstance(exc, NoCandidate) and "step time limit reached" in str(exc)
    assert exc.cost_usd == pytest.approx(0.006)


def test_ctrl_c_in_the_middle_of_a_step_keeps_what_it_spent(propose: Any) -> None:
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    exc, _ = propose([call("read_lineage"), {**call("read_lineage"), "delay": 3}])
    timer.join()
    assert type(exc) is StepAborted and "interrupted (Ctrl-C)" in str(exc)
    assert exc.cost_usd == pytest.approx(0.006)


def test_auto_picks_the_agent_only_when_a_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert resolve_operator("auto") == "builtin"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert resolve_operator("auto") == "anthropic"
    assert resolve_operator("builtin") == "builtin"


def test_notes_and_helpers_go_to_the_lineage_and_come_back(propose: Any, tmp_path: Path,
                                                         honest_attention: str) -> None:
    """What a step writes in the notebook, and a submission's helper modules, are events of
    its generation; the next step reads the run's notebook in its first message and a
    candidate's helpers with its source (a seed's from the files beside it)."""
    helper = "SCALE = None\n"
    (tmp_path / "candidates" / "attention").mkdir(parents=True)
    (tmp_path / "candidates" / "attention" / "_beside.py").write_text(helper)
    script = [call("write_notes", text="a one-pass variant is 1.2x slower: 3 loads per row"),
              {**call("read_candidate", id=1), "expect": "noted"},
              {**call("write_candidate", source=honest_attention, candidate_id=1),
               "expect": "=== _beside.py"},
              {**call("write_candidate", source="X = 1\n", file="_extra.py"), "expect": "saved"},
              call("evaluate_candidate"),
              {**call("submit_candidate", attempt=2, rationale="helpers"),
               "expect": "correctness PASSED"}]
    proposal, _ = propose(script)
    assert proposal.source == honest_attention
    notebook, helpers = proposal.events
    assert (notebook.kind, notebook.detail) == (
        "notebook", {"text": "a one-pass variant is 1.2x slower: 3 loads per row"})
    # The seed's helper came with it (written whole with #1's other files), and the new one.
    assert helpers.kind == "helpers" and helpers.detail == {
        "files": {"_beside.py": helper, "_extra.py": "X = 1\n"}}

    # The loop keeps them as events of the generation (as loop._record_events writes them).
    lineage = Lineage(tmp_path / ".avo")
    run = lineage.start_run("attention", {})
    for event in proposal.events:
        lineage.add_event(run, event.kind, {"generation": 1, "summary": event.summary,
                                            **event.detail})
    lineage.close()
    script = [{**call("read_candidate", id=2), "expect": "a one-pass variant is 1.2x slower"},
              {**call("read_lineage"), "expect": "=== _extra.py ===\nX = 1"}]
    exc, api = propose(script, turns=2, failed_steps=1)
    assert isinstance(exc, NoCandidate) and api.left == 0
    opening = api.requests[0]["messages"][0]["content"][0]["text"]
    assert "The run's notebook, written by its earlier steps (oldest first):\n- g1: a one-pass" \
        in opening


def test_a_step_without_a_candidate_keeps_its_notes(propose: Any) -> None:
    exc, api = propose([call("write_notes", text="nothing passed: the tail mask is wrong")],
                       turns=1)
    assert isinstance(exc, NoCandidate)
    (event,) = exc.events
    assert event.kind == "notebook" and event.detail["text"].endswith("tail mask is wrong")
    assert "The run's notebook is empty" in api.requests[0]["messages"][0]["content"][0]["text"]
