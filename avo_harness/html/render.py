"""``pytest --avo-html DIR``: the latest run of ``--avo-task`` as one static HTML page.

Everything is inlined (figures as base64 PNG data URIs, the style sheet in the
page) and there is no script, so ``DIR/index.html`` opens anywhere without a network.
"""
from __future__ import annotations

import base64
import difflib
import html
import json
import os
from importlib import resources
from pathlib import Path
from string import Template

import pytest

from ..results import Failure
from ..evolve.lineage import BEST_START, CUT_SLOWER, CUT_TIME, LABELS, Lineage, Record
from ..evolve.progress import phases
from ..options import HTML_FLAG, settings_of
from . import plots
from .model import RunView, baseline, entry


def main(config: pytest.Config) -> int:
    """Entry point from ``pytest_cmdline_main``; returns pytest's exit status."""
    out = Path(config.getoption("avo_html"))
    settings = settings_of(config).evolve
    store = settings.store
    if not (store / "lineage.sqlite").exists():
        raise pytest.UsageError(f"{HTML_FLAG}: no lineage store at {store}")
    if out.exists() and not out.is_dir():
        raise pytest.UsageError(f"{HTML_FLAG}: {out} exists and is not a folder")
    lineage = Lineage(store)
    try:
        view = RunView.latest(lineage, settings.task)
    finally:
        lineage.close()
    if view is None:
        raise pytest.UsageError(f"{HTML_FLAG}: no run of task {settings.task!r} in {store}")
    path = write_report(view, out)
    # Before pytest_configure (as here) there is no terminal reporter to write through.
    print(f"avo: wrote the report of run {view.run_id} ({view.task}) to {path}")
    return 0


def write_report(view: RunView, folder: Path) -> Path:
    """Render ``view`` to ``folder/index.html``, replaced atomically; returns its path."""
    page = render(view)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    tmp = folder / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render(view: RunView) -> str:
    template = Template(resources.files(__package__).joinpath("template.html").read_text())
    env = view.environment()
    return template.substitute(
        title=_e(f"avo-harness: {view.task}, run {view.run_id}"),
        environment=_e(" · ".join(f"{k} {getattr(env, k)}"
                                  for k in ("device", "clock", "torch", "triton")
                                  if getattr(env, k)) or "no evaluation has finished yet"),
        headline=_headline(view),
        trajectory=(_img(plots.trajectory(view), "running best geomean over evaluations")
                    + (_img(plots.per_config(view), "best committed version per configuration")
                       if view.configs() else "")
                    if view.judged else "<p>No evaluation has finished yet.</p>"),
        lineage=(_img(plots.lineage_tree(view), "lineage tree by operator") + _tree(view)
                 if view.records else "<p>No candidate yet.</p>"),
        comparison=_comparison(view),
        notebook=_notebook(view),
        candidates="\n".join(_candidate(view, r) for r in view.records),
    )


def _headline(view: RunView) -> str:
    judged = view.judged
    failed = sum(r.status == "failed" for r in judged)
    committed = sum(r.committed for r in judged)
    cut = sum(r.status in (CUT_SLOWER, CUT_TIME) for r in judged)
    text = (f"{len(judged)} evaluated ({len(view.records) - len(judged)} pending), "
            f"{committed} committed, {failed} failed{f', {cut} cut short' if cut else ''}.")
    best = view.best
    if best is not None:
        text += (f" Best: {_link(best)}, geomean {_num(best.geomean)} {_e(view.rate_label())}"
                 + _speedups(best.geomean, view.references(best)) + ".")
    return text


def _tree(view: RunView) -> str:
    start = view.start.geomean if view.start else None
    rows = []
    for record, depth in view.tree():
        note = ""
        if record.parents and view.known.get(record.parents[0], record).run_id != view.run_id:
            note = f" from {_ref(view, record.parents[0])}"
        if record.parents[1:]:
            note += " crossed with " + ", ".join(_ref(view, p) for p in record.parents[1:])
        island = [str(record.island)] if view.islands else []
        rows.append([f'<span style="padding-left:{1.4 * depth:.1f}em">{"└ " if depth else ""}'
                     f"{_link(record)}</span>{note}", *island, _e(record.operator),
                     _badge(record), _num(record.geomean), _ratio(record.geomean, start),
                     _e(record.rationale)])
    return _table(["candidate", *(["island"] if view.islands else []), "operator", "status",
                   "geomean", f"vs {_versus(view)}", "rationale"], rows)


def _comparison(view: RunView) -> str:
    best, start, base = view.best, view.start, view.baseline()
    if best is None:
        return "<p>No candidate was committed.</p>"
    configs = view.configs()
    base_name = base.name if base is not None else "baseline"
    rows = []
    for config in configs:
        b = base.tflops.get(config) if base is not None else None
        s = (start.scores or {}).get(config) if start is not None else None
        v = (best.scores or {}).get(config)
        rows.append([_e(config), _num(b), _num(s), _num(v),
                     _ratio(v, b), _ratio(v, s)])
    b_all = base.geomean(configs) if base is not None else None
    s_all = start.geomean if start is not None else None
    rows.append(["geomean", _num(b_all), _num(s_all), _num(best.geomean),
                 _ratio(best.geomean, b_all), _ratio(best.geomean, s_all)])
    table = _table(["config", _e(base_name),
                    f"{BEST_START} ({_link(start) if start else '-'})",
                    f"best ({_link(best)})", f"best / {_e(base_name)}",
                    f"best / {_versus(view)}"], rows, total=True)
    note = (f"{base.name} was timed in the same pytest run as the best version"
            if base is not None else "the best version's report has no baseline timing")
    return table + f'<p class="muted">{_e(view.rate_label())}; {_e(note)}.</p>'


def _versus(view: RunView) -> str:
    """What a speedup column is against: the best starting candidate, by name if any."""
    return _e(view.start.name) if view.start is not None else BEST_START


def _notebook(view: RunView) -> str:
    """What the agent wrote for its later steps, by generation, as plain text."""
    if not view.notebook:
        return "<p>The agent wrote no notes in this run.</p>"
    rows = [[_e(f"g{entry.get('generation', '?')}"), _e(str(entry.get("at", ""))[:19]),
             f'<pre class="note">{_e(entry.get("text", ""))}</pre>'] for entry in view.notebook]
    return _table(["generation", "written", "note"], rows)


def _candidate(view: RunView, record: Record) -> str:
    kind = record.outcome
    cut = record.status in (CUT_SLOWER, CUT_TIME)
    took = phases(record)
    facts = [
        ("run / generation", f"{record.run_id} / {record.generation}"
         + (f" (island {record.island})" if view.islands else "")),
        ("operator", _e(record.operator)),
        ("parents", ", ".join(_ref(view, p) for p in record.parents)
         or "none (starting population)"),
        ("rationale", _e(record.rationale)),
        ("operator cost", f"{record.tokens_in} tokens in, {record.tokens_out} out, "
                          f"${record.cost_usd:.4f}, {_num(record.operator_s)} s"),
        ("evaluation", f"{_num(record.eval_s)} s" + (f" ({_e(took)})" if took else "")
         + (f" on {_e(record.worker)}, from {_e(str(record.eval_started_at)[11:19])} to "
            f"{_e(str(record.evaluated_at)[11:19])} UTC" if record.worker else "")),
        ("geomean", "- (not every configuration was timed)" if cut else
         _num(record.geomean) + _speedups(record.geomean, view.references(record))),
    ]
    if record.reason:
        facts.append(("why it was cut" if cut else "why it failed", _e(record.reason)))
    head = (f'<h3>{_badge(record)} #{record.id} {_e(record.name)}</h3>'
            + _table([], [[_e(k), v] for k, v in facts], css="facts"))
    body = [head, _scores(record, cut), _test_report(record), _diff(view, record)]
    return (f'<section class="candidate is-{kind}" id="c{record.id}">'
            + "\n".join(part for part in body if part) + "</section>")


def _scores(record: Record, partial: bool) -> str:
    if not record.scores:
        return ""
    base = baseline(record)
    rows = [[_e(c), _num(v), _num(base.tflops.get(c) if base else None),
             _ratio(v, base.tflops.get(c) if base else None)] for c, v in record.scores.items()]
    name = _e(base.name) if base is not None else "baseline"
    title = "Score vector (partial: the configurations timed before the cut)" if partial \
        else "Score vector"
    return f"<h4>{title}</h4>" + _table(["config", "TFLOP/s", name, f"vs {name}"], rows)


def _test_report(record: Record) -> str:
    found = entry(record)
    if found is None:
        return ""
    parts = ["<h4>Test report</h4>"]
    correctness = found.correctness
    parts.append(f"<p>correctness: <b>{_e(correctness.outcome)}</b>"
                 f" ({_e(correctness.examples or 0)} inputs checked)</p>")
    failure = correctness.failure
    if failure:
        parts.append(_failure(Path(found.path or record.name), failure))
    rows = [[_e(name), _e(b.outcome), _num(b.median_s),
             _num(b.iqr_s), _e(b.rounds if b.rounds is not None else "-"), _num(b.tflops),
             _e(b.clock or "-"), _e(b.message or b.reason or "")]
            for name, b in found.benchmarks.items()]
    if rows:
        parts.append(_table(["benchmark", "outcome", "median s", "IQR s", "rounds", "TFLOP/s",
                             "clock", "note"], rows))
    # The document as the lineage keeps it, every key (read ones or not) shown as stored.
    parts.append("<details><summary>the full JSON report</summary><pre>"
                 + _e(json.dumps(record.report, indent=1)) + "</pre></details>")
    return "\n".join(parts)


def _failure(path: Path, failure: Failure) -> str:
    """The same review as the terminal prints, and where the error lies as a heatmap."""
    text = f'<pre class="failure">{_e(failure.review(path))}</pre>'
    error_map = failure.error_map
    if not error_map or not error_map.get("values"):
        return text
    where = ", ".join(f"{k}={v}" for k, v in (error_map.get("fixed") or {}).items())
    return text + _img(plots.error_heatmap(error_map, failure.tolerance),
                       f"error heatmap at {where}", css="heatmap")


def _diff(view: RunView, record: Record) -> str:
    parent = view.parent(record)
    if not record.source:  # a step that ended without a candidate (its reason says why)
        return ""
    if parent is None:
        return ("<details><summary>source (no parent: starting population)</summary><pre>"
                + _e(record.source) + "</pre></details>")
    lines = difflib.unified_diff(parent.source.splitlines(), record.source.splitlines(),
                                 f"{parent.name}.py (#{parent.id})",
                                 f"{record.name}.py (#{record.id})", lineterm="")
    styled = []
    for line in lines:
        css = ("hunk" if line.startswith("@@") else "add" if line.startswith("+")
               else "del" if line.startswith("-") else "")
        styled.append(f'<span class="{css}">{_e(line)}</span>' if css else _e(line))
    return (f"<h4>Diff against its parent {_link(parent)}</h4><pre>"
            + ("\n".join(styled) or "(identical source)") + "</pre>")


def _speedups(value: float | None, references: list[tuple[str, float]]) -> str:
    """``; 1.234x hopper_best; 0.812x torch-sdpa``: nothing for a candidate without a rate."""
    if not value:
        return ""
    return "".join(f"; {_ratio(value, reference)} {_e(name)}" for name, reference in references)


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.3f}x" if value and reference else "-"


def _ref(view: RunView, record_id: int) -> str:
    """A parent: a link within the run, a plain mention when it is from another run."""
    record = view.known.get(record_id)
    if record is None:
        return f"#{record_id}"
    if record.run_id == view.run_id:
        return _link(record)
    return f"#{record.id} {_e(record.name)} (run {record.run_id})"


def _link(record: Record) -> str:
    return f'<a href="#c{record.id}">#{record.id} {_e(record.name)}</a>'


def _badge(record: Record) -> str:
    kind = record.outcome
    return f'<span class="badge {kind}">{LABELS[kind]}</span>'


def _img(png: bytes, alt: str, css: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    css_attribute = f' class="{css}"' if css else ""
    return f'<img{css_attribute} alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[list[str]], css: str = "", total: bool = False) -> str:
    """Cells are HTML already; ``total`` marks the last row as a summary row."""
    out = [f'<table class="{css}">' if css else "<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    for i, row in enumerate(rows):
        last = total and i == len(rows) - 1
        out.append(('<tr class="total">' if last else "<tr>")
                   + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return "\n".join(out + ["</table>"])
