"""The agent's tools: input checks, drafts and their helper modules, the loop's own
evaluation, the workbench (one case, chosen configurations, compile facts, a profile) in the
judge's sandbox, notes for the run's notebook, the submission rules, the time each tool takes
from the step, and the compact views of the lineage."""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from avo_harness.agent.knowledge import Knowledge
from avo_harness.agent.tools import TOOLS, Attempt, Workspace
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
                   Knowledge.load("attention"), "g001", lambda line: None)
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
    ("compile_info", {"asm": ["ptx", "cubin"]}, "asm must be an array of strings among 'ttir', "
                                                "'ttgir', 'llir', 'ptx', 'sass', got an array"),
    ("run_case", {"case": [1]}, "case must be an object, got an array"),
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
    ("def attention(q, k, v:\n    pass\n", "syntax error in the module at line 1"),
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
    assert workspace.attempts == [Attempt(honest_attention.replace(SCALE, "2.0"))]


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
    assert "(same files as evaluated before)" in again

    # A source the lineage holds already is not submitted again.
    workspace.records.append(record(2, workspace.attempts[1].source))
    text, error = workspace.call("submit_candidate", {"attempt": 2, "rationale": "faster"})
    assert error and "attempt 2 is exactly #2 c2, already in the lineage" in text
    assert workspace.passing() == []
    workspace.records.pop()
    assert [n for n, _ in workspace.passing()] == [2]
    text, error = workspace.call("submit_candidate", {"attempt": 2, "rationale": " one\n fix "})
    assert not error and text.startswith("attempt 2 submitted")
    submission = workspace.submission
    assert submission is not None and submission.parents == [1]
    assert submission.rationale == "one fix" and submission.source == workspace.attempts[1].source
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


# Exact like the honest one but one output column is off by one from query row 40 on.
WRONG_TAIL = ("return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)",
              "o = torch.softmax(s, -1).nan_to_num(0.0) @ v\n    o[..., 40:, 3] += 1\n"
              "    return o.to(q.dtype)")


def test_run_case_shows_where_an_attempt_is_wrong_and_times_a_right_one(
        workspace: Workspace, honest_attention: str) -> None:
    workspace.deadline = time.monotonic() + 600
    workspace.call("write_candidate", {"source": honest_attention.replace(*WRONG_TAIL)})
    text, error = workspace.call("run_case", {"case": {"Nq": 100, "Nk": 70, "D": 32}})
    assert not error, text
    head, *lines = text.splitlines()
    assert head.startswith("attempt 1 on B=1 Hq=2 Hkv=2 Nq=100 Nk=70 D=32 dtype=float16")
    assert "WRONG (rule: tolerance)" in head and "dim=3" in head and "timed" not in text
    # The map: rows of 7 queries by columns of 2 dims; from row 35 on the column of dim 3 is
    # over by about 1 / tolerance (10^2 to 10^3), everything else within it.
    grid = [line.split() for line in lines if re.fullmatch(r" +\d+ [.#0-9]+", line)]
    assert [int(row) for row, _ in grid] == list(range(0, 100, 7))
    assert all(cells == "." * 16 for row, cells in grid if int(row) < 35)
    assert all(re.fullmatch(r"[.][23][.]{14}", cells) for row, cells in grid if int(row) >= 35)
    assert re.search(r"\n\[\d+\.\d s of this step's time; \d+ s left\]$", text)

    # The seed on a failure's replay: that very input (its seed too), right, and timed.
    case = {"B": 1, "D": 32, "Hkv": 1, "Hq": 2, "Nk": 17, "Nq": 33, "causal": True,
            "dtype": "float32", "layout": "mixed", "seed": 7, "sm_scale": 0.5, "spread": 1.0}
    replay = f"pytest candidates/attention/x.py::correctness --avo-replay '{json.dumps(case)}'"
    workspace.call("edit_candidate", {"candidate_id": 1, "old_text": "import torch",
                                      "new_text": "import torch  # same"})
    text, error = workspace.call("run_case", {"replay": replay})
    assert not error, text
    assert "layout=mixed seed=7 sm_scale=0.5 spread=1.0: correct (max abs error" in text
    timed = re.search(r"timed: median ([\d.e+-]+) ms, IQR [^,]+, 3 rounds, ([\d.e+-]+) TFLOP/s "
                      r"\(interpreter-wall\); physical floor ([\d.e+-]+) ms, ([\d.e+-]+)% of it "
                      "reached", text)
    assert timed, text
    median, floor, share = (float(timed.group(i)) for i in (1, 3, 4))
    assert share == pytest.approx(100 * floor / median, rel=0.01)


@pytest.mark.parametrize("args, message", [
    ({"config": "d64-n1024"}, "no benchmark configuration 'd64-n1024'; they are interp-d64-n128"),
    ({"config": "interp-d64-n128", "case": {}}, "give one of config, replay and case, not "
                                                "config and case"),
    ({"case": {"N": 5}}, "unknown case key(s) N; a case has B, Hq, Hkv"),
    ({"case": {"dtype": "float7"}}, "not a valid case (AttributeError"),
    ({"case": {"B": 128, "Nq": 4096, "Nk": 4096}}, "MiB; at most 256 MiB here"),
    ({"replay": "pytest x --avo-replay"}, "replay: no JSON case in it"),
])
def test_a_case_is_checked_before_anything_runs(workspace: Workspace, honest_attention: str,
                                                args: dict[str, Any], message: str) -> None:
    workspace.call("write_candidate", {"source": honest_attention})
    text, error = workspace.call("run_case", args)
    assert error and message in text, text


def test_time_config_times_attempt_and_best_in_one_process(workspace: Workspace,
                                                           honest_attention: str) -> None:
    text, error = workspace.call("time_config", {"configs": ["interp-d64-n128"]})
    assert error and "no attempt yet" in text
    workspace.call("write_candidate", {"source": "# a copy\n" + honest_attention})
    text, error = workspace.call("time_config", {"configs": ["nope"]})
    assert error and "configs must name benchmark configurations: interp-d64-n128" in text
    text, error = workspace.call("time_config", {"configs": ["interp-d64-n128"]})
    assert not error, text
    lines = text.splitlines()
    assert lines[:2] == ["attempt 1 against #1 c1, timed in one process, interleaved:",
                         "interp-d64-n128:"]
    assert lines[2].startswith("  attempt: median ") and lines[3].startswith("  #1 c1: median ")
    assert all("physical floor" in line and "3 rounds" in line for line in lines[2:4])
    # One clock for both (the same computation; on two busy cores the interpreter's wall
    # clock alone varies tenfold, so the ratio is checked against the medians, not near 1).
    medians = [float(m) for m in re.findall(
        r"median ([\d.e+-]+) ms, IQR [^,]+, 3 rounds, [\d.e+-]+ TFLOP/s \(interpreter-wall\)",
        text)]
    ratio = float(re.search(r"attempt / best: ([\d.]+)x", text).group(1))
    assert len(medians) == 2 and ratio == pytest.approx(medians[1] / medians[0],
                                                            rel=0.01, abs=1e-3)
    workspace.records[0].committed = False
    text, error = workspace.call("time_config", {"configs": ["interp-d64-n128"]})
    assert error and "nothing is committed yet to time against" in text


def test_on_a_cpu_compile_info_and_profile_say_so_in_one_line(workspace: Workspace) -> None:
    for tool, says in (("compile_info", "compile_info: no compiled kernel here: on a CPU the "
                                        "kernels run in Triton's interpreter, which compiles "
                                        "nothing"),
                       ("profile", "profile: no GPU here")):
        text, error = workspace.call(tool, {})
        answer, took = text.splitlines()
        assert not error and answer.startswith(says) and took.startswith("[0.")


def test_a_hostile_attempt_costs_one_line_and_the_step_time_holds(
        workspace: Workspace, honest_attention: str) -> None:
    hang = honest_attention.replace("    g = q.shape[1]", "    while True:\n        pass\n"
                                                         "    g = q.shape[1]")
    workspace.eval_settings = dataclasses.replace(workspace.eval_settings, call_timeout_s=3)
    workspace.call("write_candidate", {"source": hang})
    text, error = workspace.call("run_case", {})
    assert not error and "WRONG (rule: timeout) timed out: no answer to 'call' within 3 s" in text
    # The step's time bounds the tool, whatever the candidate does: the workbench is killed.
    workspace.eval_settings = dataclasses.replace(workspace.eval_settings, call_timeout_s=120)
    workspace.deadline = time.monotonic() + 6
    started = time.monotonic()
    text, error = workspace.call("run_case", {})
    assert error and text.startswith("stopped after 6 s") and time.monotonic() - started < 15
    text, error = workspace.call("run_case", {})
    assert error and text.startswith("not run: the step has no time left for it")
    assert text.endswith("s left]") and "-" in text.splitlines()[-1]


def test_helper_modules_are_part_of_an_attempt(workspace: Workspace,
                                               honest_attention: str) -> None:
    module = "from _scale import scale\n" + honest_attention.replace(SCALE, "scale(q, sm_scale)")
    helper = "def scale(q, s):\n    return q.shape[-1] ** -0.5 if s is None else s\n"
    text, error = workspace.call("write_candidate", {"source": helper, "file": "_scale.py"})
    assert error and "write the module first" in text
    for name, says in (("scale.py", "is not a helper's name"), ("_Scale.py", "not a helper's")):
        text, error = workspace.call("write_candidate", {"source": helper, "file": name})
        assert error and says in text
    workspace.call("write_candidate", {"source": module})
    text, error = workspace.call("write_candidate", {"source": "import flash_attn\n",
                                                     "file": "_scale.py"})
    assert error and "the harness refuses _scale.py: forbidden-call" in text
    text, error = workspace.call("write_candidate", {"source": helper, "file": "_scale.py"})
    assert text == ("attempt 2 saved (_scale.py written into attempt 1; 15 lines with "
                    "_scale.py); evaluate it with evaluate_candidate")
    text, error = workspace.call("edit_candidate", {"file": "_scale.py", "old_text": "s):",
                                                    "new_text": "s):  # 1/sqrt(D) by default"})
    assert not error and "(_scale.py of attempt 2 edited at line 1" in text
    assert workspace.attempts[2].helpers["_scale.py"].count("# 1/sqrt(D)") == 1
    files, _ = workspace.call("read_candidate", {"attempt": 3})
    assert files.startswith("=== g001_a3.py ===\nfrom _scale import scale") and \
        "=== _scale.py ===\ndef scale" in files
    report, error = workspace.call("evaluate_candidate", {"attempt": 3})
    assert "attempt 3: correctness PASSED" in report, report
    text, error = workspace.call("submit_candidate", {"attempt": 3, "rationale": "a helper"})
    assert not error and workspace.submission.helpers == workspace.attempts[2].helpers
    # An empty source removes a helper; a name the lineage holds with other contents is
    # refused (a helper's name is its identity there), the same contents are not.
    text, _ = workspace.call("write_candidate", {"source": "", "file": "_scale.py"})
    assert "_scale.py removed from attempt 3" in text and workspace.attempts[-1].helpers == {}
    workspace.records.append(record(2, module))
    workspace.helpers[2] = {"_scale.py": helper}
    text, error = workspace.call("write_candidate", {"source": "x = 1\n", "file": "_scale.py",
                                                     "attempt": 3})
    assert error and "a helper _scale.py is in the lineage already, with other contents (#2" \
        in text
    # The same module with other helpers is not the lineage's twin; with the same it is.
    assert workspace.twin(workspace.attempts[2]) is None
    assert workspace.twin(Attempt(module, {"_scale.py": helper})).id == 2
    source, _ = workspace.call("read_candidate", {"id": 2})
    assert source.endswith("=== _scale.py ===\n" + helper)


def test_notes_for_the_run_s_notebook(workspace: Workspace) -> None:
    text, error = workspace.call("write_notes", {"text": "  BLOCK_N=128 spills: 1.3x slower "})
    assert not error and text.startswith("noted: entry 1 of this step")
    assert workspace.notes == ["BLOCK_N=128 spills: 1.3x slower"]
    text, error = workspace.call("write_notes", {"text": " "})
    assert error and text == "the note is empty"
    text, _ = workspace.call("write_notes", {"text": "x" * 5000})
    assert text.startswith("noted (cut to 3,000 characters)") and len(workspace.notes[1]) == 3000
    for _ in range(6):
        workspace.call("write_notes", {"text": "more"})
    text, error = workspace.call("write_notes", {"text": "one too many"})
    assert error and "this step has written its 8 notes" in text and len(workspace.notes) == 8
