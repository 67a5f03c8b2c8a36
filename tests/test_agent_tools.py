"""The agent's tools: input checks, drafts, the loop's own evaluation, the submission rules,
and the compact views of the lineage."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from avo_harness.agent.knowledge import Knowledge
from avo_harness.agent.tools import TOOLS, Workspace
from avo_harness.evolve.evaluate import EvalSettings
from avo_harness.evolve.lineage import Record, source_hash
from avo_harness.tasks import get_task

SCALE = "(sm_scale or q.shape[-1] ** -0.5)"


def record(id: int, source: str, *, parents: list[int] | None = None, committed: bool = False,
           status: str = "passed", geomean: float | None = None, reason: str | None = None,
           rationale: str = "r", operator: str = "anthropic") -> Record:
    return Record(id=id, run_id=1, generation=id - 1, name=f"c{id}", parents=parents or [],
                  operator=operator, rationale=rationale, source=source,
                  source_hash=source_hash(source), status=status, committed=committed,
                  reason=reason, scores={"interp-d64-n128": geomean} if geomean else None,
                  geomean=geomean, report=None, operator_s=0.0, eval_s=0.0)


@pytest.fixture
def workspace(tmp_path: Path, honest_attention: str) -> Workspace:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    seed = record(1, honest_attention, committed=True, geomean=1e-4, operator="seed")
    settings = EvalSettings(device="cpu", examples=2, call_timeout_s=120, eval_timeout_s=300,
                            memory_limit_gib=8, rootdir=tmp_path)
    ws = Workspace(get_task("attention"), [seed], settings, tmp_path / "scratch",
                   Knowledge.load(), "g001", lambda line: None)
    yield ws
    ws.close()


@pytest.mark.parametrize("tool, args, message", [
    ("write_candidate", {"src": "x"}, "write_candidate: unknown argument(s) src; it takes "
                                      "source"),
    ("write_candidate", {}, "missing required argument(s) source"),
    ("write_candidate", {"source": 5}, "source must be a string, got an integer"),
    ("evaluate_candidate", "attempt 1", "evaluate_candidate takes a JSON object, got str"),
    ("evaluate_candidate", {"attempt": True}, "attempt must be an integer, got a boolean"),
    ("read_candidate", {"id": 1, "view": "all"}, "view must be one of 'source', 'diff', "
                                                 "'report'"),
    ("read_candidate", {"id": 9}, "no candidate #9 in the lineage (ids run from 1 to 1)"),
    ("submit_candidate", {"attempt": 1, "rationale": "x", "parents": [1, "2"]},
     "parents must be an array of integers"),
    ("submit_candidate", {"attempt": 1, "rationale": "x"}, "no attempt yet"),
    ("read_knowledge", {"section": "triton#nope"}, "no section 'triton#nope'"),
    ("fly", {}, "no tool 'fly'; the tools are read_lineage, read_candidate"),
])
def test_a_wrong_call_is_an_error_result_that_says_why(workspace: Workspace, tool: str,
                                                       args: Any, message: str) -> None:
    text, error = workspace.call(tool, args)
    assert error and message in text
    assert workspace.attempts == [] and workspace.submission is None


@pytest.mark.parametrize("source, message", [
    ("def attention(q, k, v:\n    pass\n", "syntax error at line 1"),
    ("def helper():\n    pass\n", "must define attention() at top level"),
    ("import torch\ndef attention(q, k, v, causal=False, sm_scale=None):\n"
     "    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\n",
     "forbidden-call"),
])
def test_sources_the_harness_would_refuse_are_not_saved(workspace: Workspace, source: str,
                                                        message: str) -> None:
    text, error = workspace.call("write_candidate", {"source": source})
    assert error and text.startswith("not saved") and message in text
    assert workspace.attempts == []


def test_edits_need_one_exact_match(workspace: Workspace, honest_attention: str) -> None:
    text, error = workspace.call("edit_candidate", {"old_text": "nowhere", "new_text": "x",
                                                    "candidate_id": 1})
    assert error and "occurs 0 times in #1" in text
    text, error = workspace.call("edit_candidate", {"old_text": "double()", "new_text": "x",
                                                    "candidate_id": 1})
    assert error and "occurs 3 times" in text
    text, error = workspace.call("edit_candidate", {"old_text": SCALE, "new_text": "2.0",
                                                    "candidate_id": 1})
    assert not error and text.startswith("attempt 1 saved (#1 edited at line 8")
    assert workspace.attempts == [honest_attention.replace(SCALE, "2.0")]


def test_draft_evaluate_repair_submit(workspace: Workspace, honest_attention: str) -> None:
    wrong = "# a draft\n" + honest_attention.replace(SCALE, "q.shape[-1] ** -0.5")
    assert workspace.call("write_candidate", {"source": wrong}) == (
        f"attempt 1 saved (written whole; {len(wrong.splitlines())} lines); evaluate it with "
        "evaluate_candidate", False)
    report, error = workspace.call("evaluate_candidate", {})
    assert not error
    for part in ("attempt 1: correctness FAILED", "(rule: tolerance)", "minimal failing input:",
                 "sm_scale=", "max abs error", "worst element:", "elements over tolerance",
                 "NaN: 0; Inf: 0", "replay: pytest", "--avo-replay", "benchmarks: not timed"):
        assert part in report, part
    text, error = workspace.call("submit_candidate", {"attempt": 1, "rationale": "faster"})
    assert error and "failed its evaluation (correctness: tolerance" in text

    text, error = workspace.call("edit_candidate", {"old_text": "* q.shape[-1] ** -0.5",
                                                    "new_text": f"* {SCALE}"})
    assert not error and text.startswith("attempt 2 saved (attempt 1 edited at line 9")
    text, error = workspace.call("submit_candidate", {"attempt": 2, "rationale": "faster"})
    assert error and "attempt 2 has not been evaluated" in text
    report, error = workspace.call("evaluate_candidate", {"attempt": 2})
    assert not error
    for part in ("attempt 2: correctness PASSED", "clock interpreter-wall (timings of Python",
                 "interp-d64-n128: median", "interp-d64-n128-causal: median", "TFLOP/s",
                 "best #1", "x the best committed (#1 c1"):
        assert part in report, part
    again, _ = workspace.call("evaluate_candidate", {"attempt": 2})
    assert "(same source as evaluated before)" in again

    # A source the lineage holds already is not submitted again.
    workspace.records.append(record(2, workspace.attempts[1]))
    text, error = workspace.call("submit_candidate", {"attempt": 2, "rationale": "faster"})
    assert error and "attempt 2 is exactly #2 c2, already in the lineage" in text
    assert workspace.passing() == []
    workspace.records.pop()
    assert [n for n, _ in workspace.passing()] == [2]
    text, error = workspace.call("submit_candidate", {"attempt": 2, "rationale": " one\n fix "})
    assert not error and text.startswith("attempt 2 submitted")
    submission = workspace.submission
    assert submission is not None and submission.parents == [1]
    assert submission.rationale == "one fix" and submission.source == workspace.attempts[1]
    assert not any((workspace.scratch / "candidates" / "attention").glob("*.py"))


def test_the_lineage_as_the_agent_reads_it(workspace: Workspace, honest_attention: str) -> None:
    child = honest_attention.replace("import torch", "import math\nimport torch")
    workspace.records += [
        record(2, child, parents=[1], geomean=1.2e-4, rationale="import math first"),
        record(3, honest_attention + "\n# x\n", parents=[1], status="failed",
               reason="correctness: tolerance: max abs error 3.0"),
        record(4, "", status="failed", reason="turn limit reached (40 calls)"),
    ]
    text, _ = workspace.call("read_lineage", {})
    for part in ("4 candidates: 1 committed, 2 failed",
                 "best committed: #1 c1, geomean 0.0001 TFLOP/s",
                 "#2 c2 r1/g1 anthropic passed, not faster 0.00012 (1.200x) +1/-0 vs #1",
                 "[correctness: tolerance: max abs error 3.0]",
                 "#4 c4 r1/g3 anthropic no candidate 0 -",
                 "#2: interp-d64-n128=0.00012"):
        assert part in text, part
    latest, _ = workspace.call("read_lineage", {"last": 1})
    assert "showing the latest 1" in latest and "#4 c4" in latest and "#2 c2" not in latest
    diff, _ = workspace.call("read_candidate", {"id": 2, "view": "diff"})
    assert "--- #1 c1" in diff and "+import math" in diff
    against, _ = workspace.call("read_candidate", {"id": 3, "view": "diff", "against": 2})
    assert "--- #2 c2" in against and "-import math" in against
    source, _ = workspace.call("read_candidate", {"id": 2})
    assert source.endswith(child)
    report, _ = workspace.call("read_candidate", {"id": 3, "view": "report"})
    assert "the evaluation failed before any check ran: correctness: tolerance" in report
    assert TOOLS["submit_candidate"].spec()["input_schema"]["required"] == ["attempt",
                                                                            "rationale"]
