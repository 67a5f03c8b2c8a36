"""The lineage, a candidate and an evaluation report as compact text for the agent.

Compact because every character is paid for on every later turn of a step: numbers to four
significant digits, one line per candidate, tracebacks cut to their ends.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..evolve.fitness import from_report
from ..evolve.lineage import FAILED, NOT_FASTER, PASSED, Record, best_committed
from ..results import Baseline, BenchResult, Report

_FAILURE_LINES = 40


def _clock(record: Record | None) -> str | None:
    return record.result.environment.clock if record is not None else None


def status(record: Record) -> str:
    if not record.source:
        return "no candidate"
    return NOT_FASTER if record.outcome == PASSED else record.outcome


def change(record: Record, by_id: dict[int, Record]) -> str:
    """``+12/-3 vs #4``: the size of the change against its first parent."""
    parent = by_id.get(record.parents[0]) if record.parents else None
    if parent is None or not record.source:
        return "-"
    added = removed = 0
    for line in difflib.unified_diff(parent.source.splitlines(), record.source.splitlines(),
                                     lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"+{added}/-{removed} vs #{parent.id}"


def lineage_text(records: list[Record], last: int) -> str:
    """Every run of the task: a header, one line per candidate (the latest ``last``), and
    the per-configuration TFLOP/s of those that passed."""
    if not records:
        return "the lineage is empty"
    by_id = {r.id: r for r in records}
    best = best_committed(records)
    shown = records[-last:] if last > 0 else records
    failed = sum(r.status == FAILED for r in records)
    committed = sum(r.committed for r in records)
    lines = [f"{len(records)} candidates: {committed} committed, {failed} failed"
             + (f"; showing the latest {len(shown)}" if len(shown) < len(records) else "")]
    if best is not None:
        lines.append(f"best committed: #{best.id} {best.name}, geomean {best.geomean:.4g} "
                     f"TFLOP/s (clock: {_clock(best) or 'unknown'})")
    lines.append("#id name run/gen operator status geomean (x best) change | rationale "
                 "[failure]")
    for r in shown:
        ratio = f" ({r.geomean / best.geomean:.3f}x)" if r.geomean and best and best.geomean \
            else ""
        why = f" [{r.reason}]" if r.reason and r.status == FAILED else ""
        lines.append(f"#{r.id} {r.name} r{r.run_id}/g{r.generation} {r.operator} {status(r)} "
                     f"{r.geomean or 0:.4g}{ratio} {change(r, by_id)} | "
                     f"{' '.join(r.rationale.split())[:240]}{why}")
    passing = [r for r in shown if r.status == PASSED and r.scores]
    if passing:
        lines.append("TFLOP/s per benchmark configuration of the passing ones:")
        for r in passing:
            scores = " ".join(f"{name}={value:.4g}" for name, value in (r.scores or {}).items())
            lines.append(f"#{r.id}: {scores}")
    return "\n".join(lines)


def candidate_text(record: Record, records: list[Record], view: str,
                   against: Record | None) -> str:
    """A lineage candidate's ``source``, its ``diff`` against a parent (or ``against``), or
    its stored evaluation ``report``."""
    head = f"#{record.id} {record.name} ({status(record)}, geomean {record.geomean or 0:.4g})"
    if view == "source":
        return f"{head}\n{record.source}" if record.source else f"{head}: it has no source"
    if view == "report":
        return f"{head}\n" + report_text(record.name, record.report, record.reason,
                                         best_committed(records), recorded=status(record))
    by_id = {r.id: r for r in records}
    base = against or (by_id.get(record.parents[0]) if record.parents else None)
    if base is None:
        return f"{head} has no parent to compare with; name one with 'against'"
    diff = difflib.unified_diff(base.source.splitlines(), record.source.splitlines(),
                                f"#{base.id} {base.name}", f"#{record.id} {record.name}",
                                lineterm="")
    return f"{head}\n" + ("\n".join(diff) or "(identical sources)")


def report_text(label: str, report: Report | Mapping[str, Any] | None, reason: str | None,
                best: Record | None, recorded: str | None = None) -> str:
    """One evaluation: the correctness outcome (with the minimal failing input and the error
    statistics when wrong), each configuration's median time and TFLOP/s against the best
    committed candidate, and whether the loop would commit it; for a lineage candidate,
    ``recorded``, what the loop did with it (whether it would now is beside the point).
    ``report``: the report, or its JSON (as an evaluation brings it back)."""
    report = Report.of(report)
    entry = report.entry
    if entry is None:
        return f"{label}: the evaluation failed before any check ran: {reason}"
    fitness = from_report(entry)
    correctness = entry.correctness
    outcome = correctness.outcome
    lines = [f"{label}: correctness {str(outcome).upper()} "
             f"({correctness.examples or 0} inputs checked)"]
    failure = correctness.failure
    if failure:
        text = failure.review(Path(label)).splitlines()
        if len(text) > _FAILURE_LINES:
            text = text[:8] + ["  ..."] + text[-(_FAILURE_LINES - 9):]
        lines += text
    elif not correctness.passed:
        # An error outside the checks carries the last lines of pytest's report as a list.
        lines.append("  " + str(correctness.message_text() or reason))
    clock = report.environment.clock or "unknown"
    benchmarks = entry.benchmarks
    if not correctness.passed:
        lines.append("benchmarks: not timed (a candidate is timed only once it is correct)")
    elif benchmarks:
        note = (" (timings of Python emulating the kernel on a CPU, not GPU speed)"
                if clock == "interpreter-wall" else "")
        lines.append(f"benchmarks, clock {clock}{note}:")
        for name, bench in benchmarks.items():
            lines.append("  " + _bench_line(name, bench, best, report.baselines.get(name)))
    if fitness.passed:
        lines.append(_verdict(fitness.geomean, best) if recorded is None else
                     f"geomean {fitness.geomean:.4g} TFLOP/s; in the lineage: {recorded}")
    elif not failure:
        lines.append(f"fails: {fitness.reason}")
    return "\n".join(lines)


def _bench_line(name: str, bench: BenchResult, best: Record | None,
                baseline: Baseline | None) -> str:
    if not bench.passed:
        why = bench.message or bench.reason or ""
        rule = f" (rule: {bench.rule})" if bench.rule else ""
        return f"{name}: {bench.outcome}{rule} {' '.join(str(why).split())[:300]}"
    tflops = bench.tflops or 0.0
    line = (f"{name}: median {(bench.median_s or 0) * 1e3:.4g} ms, IQR "
            f"{(bench.iqr_s or 0) * 1e3:.2g} ms, {bench.rounds} rounds, "
            f"{tflops:.4g} TFLOP/s; {floor_text(bench.floor_s, bench.median_s)}")
    if best is not None and (best.scores or {}).get(name):
        theirs = (best.scores or {})[name]
        line += f"; best #{best.id}: {theirs:.4g} ({tflops / theirs:.3f}x)"
    if baseline and baseline.tflops:
        line += (f"; {baseline.name}: {baseline.tflops:.4g} "
                 f"({tflops / baseline.tflops:.3f}x)")
    return line


def floor_text(floor_s: float | None, median_s: float | None) -> str:
    """The physical floor of a configuration (its FLOPs at the machine's measured matrix rate
    or its bytes at the measured copy bandwidth, whichever is longer) and how much of it a
    median reaches: 100% would be the machine's limit."""
    if not floor_s or not median_s:
        return "physical floor unknown"
    return f"physical floor {floor_s * 1e3:.4g} ms, {100 * floor_s / median_s:.3g}% of it reached"


def _verdict(geomean: float, best: Record | None) -> str:
    if best is None or not best.geomean:
        return f"geomean {geomean:.4g} TFLOP/s; nothing is committed yet, so it would be"
    ratio = geomean / best.geomean
    return (f"geomean {geomean:.4g} TFLOP/s = {ratio:.3f}x the best committed (#{best.id} "
            f"{best.name}, {best.geomean:.4g}): the loop "
            f"{'would' if ratio >= 1 else 'would not'} commit it at this measurement "
            "(it measures again; timings vary by a few percent)")
