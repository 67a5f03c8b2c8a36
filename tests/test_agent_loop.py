"""``pytest --avo-evolve --avo-operator anthropic`` end to end, in real processes, against the
fake Messages API: the missing key, a whole offline generation from the command-line server,
a run through retries, a step without a candidate, the supervisor and the token budget, and
one in which the model uses every workbench tool, a helper module and the notebook."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from avo_harness.agent.fake_server import FakeMessagesAPI, demo_script

KEY = "sk-ant-api03-FAKE-never-written-anywhere-0123456789"
FAST = ("--avo-device", "cpu", "--avo-examples", "2")
# Exact and honest, one query row at a time: the demo's draft (one block of rows) beats it by
# far more than the noise of interpreter timings on a busy machine.
ROW_BY_ROW = """
import torch


def attention(q, k, v, causal=False, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, 1).double()
    v = v.repeat_interleave(group, 1).double()
    nq, nk = q.shape[2], k.shape[2]
    scale = q.shape[-1] ** -0.5 if sm_scale is None else sm_scale
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    for i in range(nq):
        seen = max(0, min(nk, i + nk - nq + 1)) if causal else nk
        if seen:
            s = q[:, :, i:i + 1].double() @ k[:, :, :seen].transpose(-1, -2) * scale
            out[:, :, i:i + 1] = torch.softmax(s, -1) @ v[:, :, :seen]
    return out.to(q.dtype)
"""


def evolve(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "avo_harness.plugin", "--avo-evolve",
                                         "--avo-operator", "anthropic", *FAST, *args,
                                         timeout=300)


def rows(root: Path, table: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(root / ".avo" / "lineage.sqlite")
    db.row_factory = sqlite3.Row
    found = [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY id")]
    db.close()
    return found


@pytest.fixture
def project(pytester: pytest.Pytester, write_candidate: Callable[..., Path],
            honest_attention: str, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    write_candidate("seed", honest_attention)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    return pytester


def test_without_a_key_one_clear_line(project: pytest.Pytester,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    result = evolve(project)
    assert result.ret != 0
    errors = [line for line in result.errlines + result.outlines if line.strip()]
    assert errors == ["ERROR: --avo-operator anthropic: ANTHROPIC_API_KEY is not set; export "
                      "your API key (or choose --avo-operator builtin)"]
    assert not (project.path / ".avo").exists()


def test_a_whole_generation_offline_from_the_command_line_server(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    log = project.path / "requests.jsonl"
    server = subprocess.Popen([sys.executable, "-m", "avo_harness.agent.fake_server", "--log",
                               str(log)], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split()[4]  # type: ignore[union-attr]
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        project.path.joinpath("candidates", "attention", "seed.py").write_text(ROW_BY_ROW)
        # The margin takes interpreter timings on a loaded machine out of the verdict.
        result = evolve(project, "--avo-generations", "1", "--avo-margin", "0.99")
    finally:
        server.terminate()
        server.wait(timeout=10)
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == 0, output
    seed, child = rows(project.path, "candidates")
    assert child["operator"] == "anthropic" and child["committed"] == 1, output
    committed = project.path / "candidates" / "attention" / f"{child['name']}.py"
    assert committed.read_text() == child["source"]
    assert child["source"].count("sm_scale is None else sm_scale") == 1  # the repaired draft
    assert child["parents"] == json.dumps([seed["id"]])
    assert child["tokens_in"] > 0 and child["tokens_out"] > 0 and child["cost_usd"] > 0
    assert "turn 4" in output and "attempt 1: failed (correctness: tolerance" in output
    assert "attempt 2: passed" in output and "Operator spent" in output
    # Committed under a 0.99 margin: timed, within the bar, whichever was faster on a
    # loaded CPU (interpreter timings of two near-equal kernels flip there).
    assert child["geomean"] >= 0.01 * seed["geomean"] > 0
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(requests) == len(demo_script()) and all(r["had_key"] for r in requests)
    # The failing draft went out, its failure came back, the repair went out.
    draft = next(block["input"]["source"] for message in requests[2]["messages"]
                 for block in message["content"] if block.get("name") == "write_candidate")
    assert demo_script()[4]["reply"][1]["input"]["old_text"] in draft
    assert "minimal failing input" in json.dumps(requests[3]["messages"][-1])
    # The key went to the server as a header and nowhere else.
    assert KEY not in output
    for path in project.path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_retries_a_step_without_candidate_the_supervisor_and_the_token_budget(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    def call(tool: str, tokens_in: int, **args: Any) -> dict[str, Any]:
        return {"reply": [{"type": "tool_use", "name": tool, "input": args}],
                "usage": {"input_tokens": tokens_in, "output_tokens": 100}}

    directive = "Directive: stop reading, write a persistent kernel."
    script = [{"status": 429, "retry_after": "0"}, {"status": 529, "retry_after": "0"},
              {"status": 500, "retry_after": "0"},
              call("read_lineage", 1_000), call("search_knowledge", 1_000, query="persistent"),
              {"reply": [{"type": "text", "text": directive}], "expect": "Trigger: 1 steps",
               "usage": {"input_tokens": 500, "output_tokens": 200}},
              {**call("read_lineage", 43_000), "expect": directive}]
    with FakeMessagesAPI(script) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        result = evolve(project, "--avo-generations", "5", "--avo-agent-turns", "2",
                        "--avo-agent-stagnation", "1", "--avo-token-budget", "50000")
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == 0, output
    assert api.left == 0
    for status in ("429 rate_limit_error", "529 overloaded_error", "500 api_error"):
        assert f"anthropic API: {status}: scripted; retrying in 0.0 s" in output
    _, first, second = rows(project.path, "candidates")
    assert (first["status"], first["source"], first["committed"]) == ("failed", "", 0)
    assert first["reason"] == "turn limit reached (2 calls); no version passed in this step"
    assert (first["tokens_in"], first["tokens_out"]) == (2_000, 200)
    assert first["cost_usd"] == pytest.approx(0.012)
    assert second["reason"].startswith("run token budget: 4,000 tokens left cannot hold "
                                       "another call")
    assert (second["tokens_in"], second["tokens_out"]) == (43_500, 300)
    assert second["cost_usd"] == pytest.approx(0.006 + 0.174)
    (event,) = rows(project.path, "events")
    detail = json.loads(event["detail"])
    assert event["kind"] == "supervisor" and detail["generation"] == 2
    assert detail["directive"] == directive and detail["trigger"] == "stagnation"
    assert "gen   2 supervisor: stagnation: 1 steps without a committed improvement" in output
    (run,) = rows(project.path, "runs")
    assert run["stop_reason"].startswith("anthropic: run token budget")
    assert "Operator spent 46,000 tokens, $0.19." in output


def test_a_rationale_that_looks_like_markup_is_kept_as_it_is(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    rationale = "keeps acc[/N] in registers; y[b, h] indexed once"
    script = demo_script()
    script[-1]["reply"][1]["input"]["rationale"] = rationale
    with FakeMessagesAPI(script) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        result = evolve(project, "--avo-generations", "1")
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == 0, output
    assert f"({rationale})" in output and "MarkupError" not in output
    child = rows(project.path, "candidates")[-1]
    assert child["rationale"] == rationale and child["status"] != "pending"
    shown = project.runpytest_subprocess("-p", "avo_harness.plugin", "--avo-lineage")
    assert "acc[/N]" in "".join(line.strip() for line in shown.outlines)


def test_running_candidates_never_imports_the_sdk(pytester: pytest.Pytester,
                                                  write_candidate: Callable[..., Path],
                                                  honest_attention: str) -> None:
    write_candidate("seed", honest_attention)
    pytester.makeconftest("import sys\n\ndef pytest_unconfigure(config):\n"
                          "    print('anthropic imported:', 'anthropic' in sys.modules)\n")
    result = pytester.runpytest_subprocess("-p", "avo_harness.plugin", "candidates", "--co",
                                           "-q")
    result.stdout.fnmatch_lines(["*seed.py::correctness", "anthropic imported: False"])


@pytest.mark.slow
def test_what_a_step_spent_survives_a_kill_and_the_resumed_run_counts_it(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal
    import time

    script = [{"reply": [{"type": "tool_use", "name": "read_lineage", "input": {}}],
               "usage": {"input_tokens": 40_000, "output_tokens": 1_000}},
              {"delay": 120, "reply": [{"type": "text", "text": "still thinking"}]}]
    with FakeMessagesAPI(script) as api:
        env = dict(os.environ, ANTHROPIC_BASE_URL=api.url)
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "avo_harness.plugin",
                                 "--avo-evolve", "--avo-operator", "anthropic", *FAST,
                                 "--avo-generations", "3"], cwd=project.path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while api.left > 1 or not (project.path / ".avo" / "lineage.sqlite").exists() \
                    or not rows(project.path, "spend"):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # mid-step: its second call is in flight
            proc.wait()
    (spent,) = rows(project.path, "spend")
    assert (spent["tokens_in"], spent["tokens_out"]) == (40_000, 1_000) and spent["cost_usd"] > 0
    resumed = evolve(project, "--avo-resume", "--avo-token-budget", "30000")
    output = "\n".join(resumed.outlines + resumed.errlines)
    assert "token budget reached (41,000)" in output, output


@pytest.mark.slow
def test_every_workbench_tool_once_then_the_next_step_reads_notes_and_helpers(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, honest_attention: str) -> None:
    """On a CPU, through the loop: the model drafts a candidate with a helper module, runs it
    on one configuration, times it against the best, asks for compile facts and a profile
    (a CPU answers both in a line), writes a note, evaluates and submits; the lineage keeps
    the note and the helper with the candidate, the next step's first message carries the
    note, the candidate's helper comes back with it, and the HTML report shows the note."""
    scaled = "from _scale import scale\n" + honest_attention.replace(
        "(sm_scale or q.shape[-1] ** -0.5)", "scale(q, sm_scale)")
    helper = "def scale(q, s):\n    return q.shape[-1] ** -0.5 if s is None else s\n"
    note = "the helper costs nothing: 1.0x on interp-d64-n128-causal"

    def use(tool: str, expect: str | None = None, **args: Any) -> dict[str, Any]:
        return {"reply": [{"type": "tool_use", "name": tool, "input": args}],
                **({"expect": expect} if expect else {})}

    script = [use("read_lineage"),
              use("write_candidate", "committed", source=scaled),
              use("write_candidate", "attempt 1 saved", source=helper, file="_scale.py"),
              use("run_case", "attempt 2 saved", config="interp-d64-n128"),
              use("time_config", "attempt 2 on interp-d64-n128 (seed=",
                  configs=["interp-d64-n128-causal"]),
              use("compile_info", "attempt / best: "),
              use("profile", "Triton's interpreter, which compiles nothing", case={"Nq": 64}),
              use("write_notes", "there is nothing to profile", text=note),
              use("write_candidate", "noted", source="# plain\n" + honest_attention),
              use("evaluate_candidate", "attempt 3 saved"),
              use("submit_candidate", "correctness PASSED", attempt=3, rationale="a comment"),
              use("read_candidate", note, id=2),
              {"expect": "=== _scale.py ===\n" + helper, "stop_reason": "refusal",
               "reply": [{"type": "text", "text": "Nothing more to try."}]}]
    with FakeMessagesAPI(script) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        # No cascade: the child ties its parent, and the interpreter's noisy clock could cut
        # it as slower, which is not what this test is about.
        result = evolve(project, "--avo-generations", "2", "--avo-cascade-optimism", "0")
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == 0, output
    assert api.left == 0, output
    said = {block["tool_use_id"]: block["content"] for request in api.requests
            for message in request["messages"] for block in message["content"]
            if block.get("type") == "tool_result"}
    run_case = next(text for text in said.values() if text.startswith("attempt 2 on interp"))
    assert ": correct (" in run_case and "physical floor" in run_case  # the helper was there
    assert all(re.search(r"\[\d+\.\d s of this step's time; [\d,]+ s left\]$", said[k])
               for k in said if said[k].startswith(("attempt 2 on", "attempt 2 against")))
    _, child, nothing = rows(project.path, "candidates")
    assert child["status"] == "passed" and child["source"] == "# plain\n" + honest_attention
    assert nothing["source"] == "" and "declined" in nothing["reason"]
    events = {e["kind"]: json.loads(e["detail"]) for e in rows(project.path, "events")}
    assert events["notebook"]["generation"] == 1 and events["notebook"]["text"] == note
    assert events["helpers"]["generation"] == 1
    assert events["helpers"]["files"] == {"_scale.py": helper}
    assert f"gen   1 notebook: {note}" in output
    opening = api.requests[11]["messages"][0]["content"][0]["text"]
    assert f"The run's notebook, written by its earlier steps (oldest first):\n- g1: {note}" \
        in opening
    shown = project.runpytest_subprocess("-p", "avo_harness.plugin", "--avo-html", "report")
    assert shown.ret == 0
    page = (project.path / "report" / "index.html").read_text()
    notebook = page[page.index('<h2 id="notebook">'):page.index('<h2 id="candidates">')]
    assert "<td>g1</td>" in notebook and note in notebook
