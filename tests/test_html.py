"""The HTML report (``--avo-html``): rendered from a real lineage, checked in a real browser.

One short CPU search (a plain-torch candidate with tunables and a wrong one, so a
correctness failure with its heatmap is on the page) is made once for the module.
"""
from __future__ import annotations

import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avo_harness.evolve.lineage import Lineage
from avo_harness.html import plots
from avo_harness.html.model import RunView
from avo_harness.tunables import read_space

# Wraps a right attention (renamed _exact): slower the more REPEAT says, so the search has
# something real to remove.
REPEATED = '''

TUNABLES = {"REPEAT": {"value": 4, "choices": [1, 2, 3, 4]}}


def attention(q, k, v, causal=False, sm_scale=None):
    for _ in range(TUNABLES["REPEAT"]["value"]):
        out = _exact(q, k, v, causal, sm_scale)
    return out
'''
# A missing tail: query rows from 64 on are never written (a boundary case has 70).
TAIL = REPEATED.replace("    return out\n", "    out[:, :, 64:] = 0\n    return out\n", 1)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def searched(make_project: Callable[..., Path], fresh_run: Callable[..., Any],
             honest_attention: str) -> Path:
    """A project after ``--avo-evolve --avo-html report``: 2 seeds (one wrong), 2 generations."""
    exact = honest_attention.replace("def attention(", "def _exact(")
    root = make_project({"seed": exact + REPEATED, "tail": exact + TAIL})
    run = fresh_run(root, "--avo-evolve", "--avo-generations", "2", "--avo-operator", "builtin",
                    "--avo-html", "report")
    assert run.ret == 0, run.text
    assert "avo: wrote the report of run 1 (attention) to report/index.html" in run.text
    return root


def _view(root: Path) -> RunView:
    lineage = Lineage(root / ".avo")
    try:
        view = RunView.latest(lineage, "attention")
    finally:
        lineage.close()
    assert view is not None
    return view


@pytest.mark.slow
def test_the_page_holds_every_candidate_and_the_failure_review(searched: Path) -> None:
    page = (searched / "report" / "index.html").read_text()
    view = _view(searched)
    assert [r.operator for r in view.records] == ["seed", "seed", "builtin", "builtin"]
    for record in view.records:
        assert f'id="c{record.id}"' in page and html.escape(record.rationale) in page
    tail = next(r for r in view.records if r.name == "tail")
    failure = tail.report["candidates"]["candidates/attention/tail.py"]["correctness"]["failure"]
    assert "tail.py is wrong (rule: tolerance)" in page
    assert "replay: pytest candidates/attention/tail.py::correctness --avo-replay" in page
    assert failure["error_map"]["axes"] == ["query", "dim"]
    # Trajectory, per configuration, lineage, and the tail's heatmap; nothing from a network.
    assert page.count('src="data:image/png;base64,') == 4
    assert 'class="heatmap"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    # Each proposal is shown as its diff against its parent: the tunable it changed.
    for record in view.records[2:]:
        value = read_space(record.source).values["REPEAT"]
        assert '<span class="add">+    ' + html.escape(f'"REPEAT": {{"value": {value},') in page


@pytest.mark.slow
def test_html_alone_renders_the_same_page_again(searched: Path,
                                                pytester: pytest.Pytester) -> None:
    again = pytester.path / "again"
    result = pytester.runpytest("--avo-store", str(searched / ".avo"), "--avo-html", str(again))
    assert result.ret == 0, result.outlines + result.errlines
    assert ((again / "index.html").read_text()
            == (searched / "report" / "index.html").read_text())


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="needs Debian's chromium and chromedriver (.ci/run installs them)")
@pytest.mark.slow
def test_the_page_in_a_headless_browser(searched: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get((searched / "report" / "index.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt])")
        sections = driver.execute_script(
            "return ['trajectory', 'lineage', 'comparison', 'candidates']"
            ".filter(id => document.getElementById(id) === null)")
        dangling = driver.execute_script(
            "return Array.from(document.querySelectorAll('a[href^=\"#\"]'), a => a.hash)"
            ".filter(h => document.getElementById(h.slice(1)) === null)")
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, height)
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert not severe, severe
    assert len(images) == 4 and all(done and width > 0 for done, width, _ in images), images
    assert any(alt.startswith("error heatmap at batch=") for _, _, alt in images)
    assert sections == [] and dangling == []
    from matplotlib.image import imread

    # The whole page in one picture (less the window's own frame).
    assert imread(shot).shape[1] == 1280 and imread(shot).shape[0] > 0.9 * height


@pytest.mark.slow
def test_bad_html_options_fail_in_one_line(searched: Path, pytester: pytest.Pytester) -> None:
    pytester.makefile(".txt", file="")
    store = str(searched / ".avo")
    for args, message in ((["--avo-html", "out"], "--avo-html: no lineage store at"),
                          (["--avo-html", "file.txt", "--avo-store", store],
                           "--avo-html: file.txt exists and is not a folder"),
                          (["--avo-html", "out", "--avo-store", store, "--avo-task", "rmsnorm"],
                           "--avo-html: no run of task 'rmsnorm'")):
        result = pytester.runpytest(*args)
        errors = [line for line in result.errlines if line.startswith("ERROR")]
        assert result.ret == 4 and len(errors) == 1 and message in errors[0], result.errlines


def _record(lineage: Lineage, run: int, generation: int, parents: list[int], *,
            geomean: float, committed: bool, operator: str = "builtin") -> int:
    cid = lineage.add_pending(run, generation, f"g{generation}", parents, operator, "why",
                              f"x = {generation}\n", 0.0)
    report = {"environment": {"interpreter": False, "clock": "cuda-events"},
              "baselines": {"a": {"name": "lib", "tflops": 4.0}, "b": {"name": "lib",
                                                                     "tflops": 16.0}}}
    lineage.record_evaluation(cid, passed=geomean > 0, committed=committed, reason=None,
                              scores={"a": geomean, "b": geomean}, geomean=geomean,
                              report=report, eval_s=1.0)
    return cid


def test_running_best_tree_and_references_follow_the_lineage(tmp_path: Path) -> None:
    from avo_harness.html.render import render

    lineage = Lineage(tmp_path)
    old = lineage.start_run("attention", {})
    elder = _record(lineage, old, 0, [], geomean=9.0, committed=True, operator="seed")
    run = lineage.start_run("attention", {})
    seed = _record(lineage, run, 0, [], geomean=2.0, committed=True, operator="seed")
    better = _record(lineage, run, 1, [seed], geomean=3.0, committed=True)
    _record(lineage, run, 2, [better], geomean=0.0, committed=False)
    tied = _record(lineage, run, 3, [seed, better], geomean=3.0, committed=True)
    adopted = _record(lineage, run, 4, [elder], geomean=2.5, committed=False)
    lineage.add_pending(run, 5, "g5", [tied], "builtin", "pending", "x = 5\n", 0.0)
    view = RunView.latest(lineage, "attention")
    lineage.close()

    assert view is not None and view.run_id == run and len(view.records) == 6
    # A tie does not replace the best (the loop's rule); the pending row is not judged yet.
    assert [b.id if b else None for b in view.running_best()] == [seed, better, better, better,
                                                                  better]
    assert view.start is not None and view.start.id == seed
    assert [(r.id, depth) for r, depth in view.tree()] == [
        (seed, 0), (better, 1), (better + 1, 2), (tied, 1), (tied + 2, 2), (adopted, 0)]
    # Speedups name the best starting candidate, never the starting population's operator.
    assert view.references(view.records[1]) == [("g0", 2.0), ("lib", pytest.approx(8.0))]
    assert view.rate_label() == "TFLOP/s (cuda-events)"
    page = render(view)
    assert "<th>vs g0</th>" in page and "<th>best / g0</th>" in page
    assert "1.500x g0; 0.375x lib" in page and "x seed" not in page


def test_a_run_without_a_passing_start_says_best_start(tmp_path: Path) -> None:
    from avo_harness.html.render import render

    lineage = Lineage(tmp_path)
    run = lineage.start_run("attention", {})
    wrong = _record(lineage, run, 0, [], geomean=0.0, committed=False, operator="seed")
    _record(lineage, run, 1, [wrong], geomean=3.0, committed=True)
    view = RunView.latest(lineage, "attention")
    lineage.close()
    assert view is not None and view.start is None
    page = render(view)
    assert "<th>vs best start</th>" in page and "<th>best / best start</th>" in page
    assert "best start (-)" in page and "vs seed" not in page


def test_heatmap_draws_nan_in_magenta() -> None:
    from matplotlib.image import imread

    values: list[list[float | None]] = [[1e-4] * 8 for _ in range(6)] + [[None] * 8]
    png = plots.error_heatmap({"fixed": {"batch": 0, "head": 1}, "axes": ["query", "dim"],
                               "row_step": 1, "values": values}, tolerance=1e-3)
    pixels = imread(io.BytesIO(png))[..., :3]
    magenta = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] > 0.9)
    assert magenta.sum() > 100


def test_every_lineage_outcome_has_a_label_and_a_marker() -> None:
    from avo_harness.evolve.lineage import LABELS, OUTCOMES

    assert set(OUTCOMES) == set(LABELS) == set(plots._STATUS_MARKERS)


def test_a_cut_candidate_shows_its_label_reason_partial_scores_and_phases(
        tmp_path: Path) -> None:
    from avo_harness.html.render import render

    lineage = Lineage(tmp_path)
    run = lineage.start_run("attention", {})
    seed = _record(lineage, run, 0, [], geomean=2.0, committed=True, operator="seed")
    cid = lineage.add_pending(run, 1, "g1", [seed], "builtin", "why", "x = 1\n", 0.0)
    entry = {"correctness": {"outcome": "passed", "examples": 3},
             "phases_s": {"start": 3.14, "compile": 12.0, "correctness": 4.2, "timing": 9.8,
                          "total": 29.1},
             "benchmarks": {"a": {"outcome": "passed", "tflops": 1.5},
                            "b": {"outcome": "cut", "reason": "cut: slower: at most 1.9"}}}
    lineage.record_evaluation(cid, passed=False, committed=False,
                              reason="cut: slower (1 of 2 configurations timed)",
                              scores={"a": 1.5}, geomean=0.0,
                              report={"candidates": {"g1.py": entry}}, eval_s=31.0, cut="slower")
    view = RunView.latest(lineage, "attention")
    lineage.close()
    assert view is not None
    page = render(view)
    section = page[page.index(f'id="c{cid}"'):]
    assert '<span class="badge cut-slower">cut: slower</span>' in section
    assert "why it was cut</td><td>cut: slower (1 of 2 configurations timed)" in section
    assert "Score vector (partial: the configurations timed before the cut)" in section
    assert "31 s (start 3.1 s, compile 12.0 s, correctness 4.2 s, timing 9.8 s)" in section
    assert "<td>cut</td>" in section and "cut: slower: at most 1.9" in section
    assert "1 cut short." in page
    # A report without phases (all of them before phases_s) shows the time alone.
    seed_section = page[page.index(f'id="c{seed}"'):page.index(f'id="c{cid}"')]
    assert "<td>1 s</td>" in seed_section


def test_the_agent_s_notebook_is_a_section_of_its_own() -> None:
    from avo_harness.html.render import render

    def notebook(page: str) -> str:
        return page[page.index('<h2 id="notebook">'):page.index('<h2 id="candidates">')]

    empty = notebook(render(RunView("attention", 1, [], {})))
    assert "The agent wrote no notes in this run." in empty
    entry = {"generation": 3, "at": "2026-12-02T05:00:00+00:00", "text": "acc[/N] <b>x</b>"}
    shown = notebook(render(RunView("attention", 1, [], {}, [entry])))
    assert "<td>g3</td><td>2026-12-02T05:00:00</td>" in shown
    # Model text is text: never markup.
    assert '<pre class="note">acc[/N] &lt;b&gt;x&lt;/b&gt;</pre>' in shown


def test_islands_and_workers_show_when_the_run_had_them(tmp_path: Path) -> None:
    from avo_harness.evolve.lineage import now
    from avo_harness.html.render import render

    lineage = Lineage(tmp_path)
    run = lineage.start_run("attention", {})
    seed = _record(lineage, run, 0, [], geomean=2.0, committed=True, operator="seed")
    cid = lineage.add_pending(run, 1, "g1", [seed], "builtin", "why", "x = 1\n", 0.0, island=1)
    lineage.record_evaluation(cid, passed=True, committed=True, reason=None, scores={"a": 3.0},
                              geomean=3.0, report=None, eval_s=30.0, worker="gpu0.1",
                              started_at=now())
    page = render(RunView.latest(lineage, "attention"))
    lineage.close()
    assert "<th>island</th>" in page
    section = page[page.index(f'id="c{cid}"'):]
    assert "1 / 1 (island 1)" in section and " on gpu0.1, from " in section
    plain = render(RunView("attention", run, [], {}))
    assert "<th>island</th>" not in plain
