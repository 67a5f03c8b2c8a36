"""Scripted agent sessions over real HTTP: malformed tool input, nudges, refusals, the budget
running out mid-step, how the prompt is cached, empty and truncated replies, model text that
looks like markup, and the context window."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from avo_harness.agent.budget import Limits, Meter, OutOfBudget
from avo_harness.agent.client import MessagesClient, StepEnd
from avo_harness.agent.fake_server import FakeMessagesAPI
from avo_harness.agent.knowledge import Knowledge
from avo_harness.agent.pricing import PRICES
from avo_harness.agent.prompts import NUDGE, system_prompt
from avo_harness.agent.session import Declined, Session
from avo_harness.agent.tools import Workspace
from avo_harness.evolve.evaluate import EvalSettings
from avo_harness.evolve.lineage import Record, source_hash
from avo_harness.evolve.progress import Progress
from avo_harness.tasks import get_task

OPUS = PRICES["claude-opus-5-5"]


def call(tool: str, **args: Any) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "name": tool, "input": args}]


@pytest.fixture
def session(tmp_path: Path, honest_attention: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A session against a fake server playing ``script``, under ``limits``."""
    servers: list[FakeMessagesAPI] = []

    def start(script: list[dict[str, Any]], limits: Limits, window: int | None = None,
              server_window: int | None = None) -> tuple[Session, FakeMessagesAPI]:
        api = FakeMessagesAPI(script, window=server_window or window).start()
        servers.append(api)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        task = get_task("attention")
        seed = Record(1, 1, 0, "seed", [], "seed", "", honest_attention,
                      source_hash(honest_attention), "passed", True, None, None, 1e-4, None,
                      0.0, 0.0)
        settings = EvalSettings("cpu", 2, 60, 120, 8, tmp_path)
        knowledge = Knowledge.load("attention")
        workspace = Workspace(task, [seed], settings, tmp_path / "scratch", knowledge, "g001",
                              lambda line: None)
        # What the session prints goes through a real console, as in a run.
        printed = io.StringIO()
        log = Progress(Console(file=printed, width=400)).line
        agent = Session(MessagesClient("claude-opus-5-5", log=log),
                        system_prompt(task, knowledge, False), workspace, Meter(OPUS, limits),
                        log, **({"window": window} if window else {}))
        agent.printed = printed  # type: ignore[attr-defined]
        return agent, api

    yield start
    for api in servers:
        api.stop()


def _last_message(request: dict[str, Any]) -> dict[str, Any]:
    return request["messages"][-1]


def test_malformed_input_is_answered_and_the_model_goes_on(session: Any) -> None:
    script = [{"reply": call("write_candidate", src="x")},
              {"expect": "unknown argument(s) src", "reply": call("write_candidate",
                                                                   source="def attention(:")},
              {"expect": "syntax error", "reply": [{"type": "text", "text": "Let me think."}]},
              {"expect": "Continue with the tools", "reply": call("read_lineage", last=5)}]
    agent, api = session(script, Limits(turns=4, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(OutOfBudget, match="turn limit reached") as info:
        agent.run("Generation 1. Start by reading the lineage.")
    assert not info.value.run and api.left == 0
    error = _last_message(api.requests[1])["content"][0]
    assert error["type"] == "tool_result" and error["is_error"] is True
    assert error["content"].startswith("write_candidate: unknown argument(s) src")
    assert _last_message(api.requests[3])["content"][0]["text"] == NUDGE
    assert agent.workspace.attempts == [] and agent.notes == ["Let me think."]
    assert agent.meter.turns == 4 and agent.meter.tokens_in > 0
    # The stable prefix is cached for an hour; the conversation up to its last block each
    # turn, with one breakpoint only (earlier ones are dropped as the conversation grows).
    for request in api.requests:
        assert request["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
        assert json.dumps(request["messages"]).count("cache_control") == 1
        assert _last_message(request)["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert [t["name"] for t in api.requests[0]["tools"]][:2] == ["read_lineage",
                                                                "read_candidate"]
    assert "read_knowledge" in api.requests[0]["system"][0]["text"]


def test_a_refusal_ends_the_step(session: Any) -> None:
    script = [{"reply": [{"type": "text", "text": "No."}], "stop_reason": "refusal"}]
    agent, _ = session(script, Limits(turns=4, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(Declined, match="stop reason: refusal"):
        agent.run("Generation 1.")


def test_the_run_budget_runs_out_mid_step_and_what_was_spent_is_kept(session: Any) -> None:
    script = [{"reply": call("read_lineage"),
               "usage": {"input_tokens": 20_000, "output_tokens": 100}},
              {"reply": call("read_lineage")}]
    agent, api = session(script, Limits(turns=40, tokens=10**7, usd=5.0, seconds=600.0,
                                        run_usd=0.083))
    with pytest.raises(OutOfBudget, match=r"run cost budget: \$0\.0010 left cannot pay") as info:
        agent.run("Generation 1.")
    assert info.value.run and len(api.requests) == 1
    # The call that was made had its output capped to what the budget could pay.
    assert 1_024 <= api.requests[0]["max_tokens"] < 16_000
    assert agent.meter.spent() == {"tokens_in": 20_000, "tokens_out": 100,
                                   "cost_usd": pytest.approx(0.082)}


def test_model_text_that_looks_like_markup_is_printed_as_it_is(session: Any) -> None:
    note = "acc[/N] must stay; y[b, h] too; [bold]no[/bold] :x:"
    script = [{"reply": [{"type": "text", "text": note}, *call("read_lineage")]}]
    agent, _ = session(script, Limits(turns=1, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(OutOfBudget, match="turn limit"):
        agent.run("Generation 1.")
    assert note in agent.printed.getvalue()


def test_an_empty_reply_is_not_sent_back_and_the_model_is_nudged(session: Any) -> None:
    script = [{"reply": call("read_lineage")}, {"reply": [], "stop_reason": "end_turn"},
              {"expect": "Continue with the tools", "reply": call("read_lineage")}]
    agent, api = session(script, Limits(turns=3, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(OutOfBudget, match="turn limit"):
        agent.run("Generation 1.")
    assert api.left == 0
    assert all(m["content"] for m in api.requests[2]["messages"])
    assert api.requests[2]["messages"][-1]["content"][0]["type"] == "tool_result"


def test_empty_text_blocks_and_repeated_tool_use_ids_are_not_sent_back(session: Any) -> None:
    # What an independent fake model sent: both made the next request a 400, which ended the
    # run. The fake server refuses them as the real API does.
    script = [{"reply": [{"type": "text", "text": ""}, {"type": "tool_use", "id": "toolu_1",
                                                        "name": "read_lineage", "input": {}}]},
              {"reply": [{"type": "text", "text": "  "},
                         {"type": "tool_use", "id": "toolu_1", "name": "read_lineage",
                          "input": {}},
                         {"type": "tool_use", "id": "toolu_1", "name": "read_lineage",
                          "input": {"last": 2}}]},
              {"expect": "seed", "reply": call("read_lineage")}]
    agent, api = session(script, Limits(turns=3, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(OutOfBudget, match="turn limit"):
        agent.run("Generation 1.")
    assert api.left == 0  # every request was valid
    sent = api.requests[2]["messages"]
    ids = [b["id"] for m in sent if m["role"] == "assistant" for b in m["content"]
           if b["type"] == "tool_use"]
    assert len(ids) == len(set(ids)) == 3
    answered = [b["tool_use_id"] for b in sent[-1]["content"]]
    assert answered == ids[1:]
    assert all(b.get("text", "x").strip() for m in sent for b in m["content"])


def test_a_refusal_with_no_content_ends_the_step(session: Any) -> None:
    script = [{"reply": [], "stop_reason": "refusal"}]
    agent, api = session(script, Limits(turns=4, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(Declined, match="stop reason: refusal"):
        agent.run("Generation 1.")
    assert len(api.requests) == 1


def test_a_call_cut_at_max_tokens_is_not_run(session: Any) -> None:
    script = [{"reply": call("write_candidate", source="def attention(q, k"),
               "stop_reason": "max_tokens"},
              {"expect": "not run: the reply reached its limit", "reply": call("read_lineage")}]
    agent, api = session(script, Limits(turns=2, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(OutOfBudget, match="turn limit"):
        agent.run("Generation 1.")
    result = _last_message(api.requests[1])["content"][0]
    assert result["is_error"] is True and "syntax error" not in result["content"]
    assert agent.workspace.attempts == []


def test_the_conversation_stays_within_the_context_window(session: Any) -> None:
    reads = [{"reply": call("read_knowledge", section=name)}
             for name in ("triton", "attention", "harness", "triton", "attention", "harness")]
    probe, _ = session([], Limits(turns=1, tokens=10**7, usd=5.0, seconds=600.0))
    # Room for the output asked for (16,000) and about two knowledge files.
    window = probe._stable_tokens + 16_000 + 5_000  # type: ignore[attr-defined]
    agent, api = session(reads, Limits(turns=6, tokens=10**7, usd=5.0, seconds=600.0),
                         window=window)
    with pytest.raises(OutOfBudget, match="turn limit"):
        agent.run("Generation 1.")
    assert api.left == 0  # the server never refused a prompt as too long
    assert "old tool results and drafts cut" in agent.printed.getvalue()
    last = api.requests[-1]
    assert "was cut to keep the conversation" in json.dumps(last["messages"][1:-2])
    assert "was cut" not in json.dumps(last["messages"][-1])  # the latest result is whole


def test_an_overflow_answer_without_counts_ends_the_step(session: Any) -> None:
    script = [{"status": 400, "message": "prompt is too long"}]
    agent, _ = session(script, Limits(turns=2, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(StepEnd, match="prompt is too long"):
        agent.run("Generation 1.")


def test_an_overflow_answer_shrinks_the_window_and_the_step_goes_on(session: Any) -> None:
    # A model whose window is smaller than the session's table says: its answer gives the
    # counts, the conversation is cut to fit them, and the call is made again.
    reads = [{"reply": call("read_knowledge", section=name)}
             for name in ("triton", "attention", "harness", "triton", "attention", "harness")]
    probe, _ = session([], Limits(turns=1, tokens=10**7, usd=5.0, seconds=600.0))
    # The server counts four characters a token, the session three (it errs high).
    small = probe._stable_tokens * 3 // 4 + 16_000 + 3_000  # type: ignore[attr-defined]
    agent, api = session(reads, Limits(turns=6, tokens=10**7, usd=5.0, seconds=600.0),
                         server_window=small)
    with pytest.raises(OutOfBudget, match="turn limit"):
        agent.run("Generation 1.")
    assert api.left == 0 and agent.window < small
    assert "the window is now" in agent.printed.getvalue()
    assert "was cut to keep the conversation" in json.dumps(api.requests[-1]["messages"])


def test_a_draft_identical_to_a_lineage_candidate_is_not_evaluated(
        session: Any, honest_attention: str) -> None:
    script = [{"reply": call("write_candidate", source=honest_attention)},
              {"expect": "attempt 1 saved", "reply": call("evaluate_candidate")},
              {"expect": "already in the lineage", "reply": call("read_lineage")}]
    agent, api = session(script, Limits(turns=3, tokens=10**7, usd=5.0, seconds=600.0))
    with pytest.raises(OutOfBudget, match="turn limit"):
        agent.run("Generation 1.")
    assert api.left == 0 and agent.workspace.evaluations == {}
