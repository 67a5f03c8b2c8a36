"""The lineage store: transactions, pending rows, and what survives reopening."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from avo_harness.evolve.lineage import Lineage, source_hash


def test_rows_round_trip_and_survive_reopening(tmp_path: Path) -> None:
    store = Lineage(tmp_path)
    run = store.start_run("attention", {"seed": "1"})
    cid = store.add_pending(run, 0, "seed", [], "seed", "start", "x = 1\n", 0.0,
                            tokens_in=10, tokens_out=5, cost_usd=0.25)
    assert [r.status for r in store.pending(run)] == ["pending"]
    store.record_evaluation(cid, passed=True, committed=True, reason=None,
                            scores={"a": 1.5}, geomean=1.5, report={"schema": "x"}, eval_s=2.0)
    store.add_event(run, "note", {"why": "test"})
    store.finish_run(run, "done")
    store.close()

    again = Lineage(tmp_path)
    (record,) = again.records(task="attention")
    assert record.committed and record.scores == {"a": 1.5} and record.report == {"schema": "x"}
    assert record.source_hash == source_hash("x = 1\n")
    assert (record.tokens_in, record.tokens_out, record.cost_usd) == (10, 5, 0.25)
    assert again.latest_run("attention") == run and again.latest_run("rmsnorm") is None
    assert again.run_settings(run) == {"seed": "1"}
    assert list(again.pending(run)) == []


def test_an_evaluation_is_recorded_once(tmp_path: Path) -> None:
    store = Lineage(tmp_path)
    run = store.start_run("attention", {})
    cid = store.add_pending(run, 0, "a", [], "seed", "", "x", 0.0)
    store.record_evaluation(cid, passed=False, committed=False, reason="crash", scores=None,
                            geomean=0.0, report=None, eval_s=1.0)
    store.record_evaluation(cid, passed=True, committed=True, reason=None, scores={},
                            geomean=9.0, report=None, eval_s=1.0)
    (record,) = store.records(run)
    assert record.status == "failed" and not record.committed and record.reason == "crash"


def test_one_generation_per_run_is_enforced(tmp_path: Path) -> None:
    store = Lineage(tmp_path)
    run = store.start_run("attention", {})
    store.add_pending(run, 1, "a", [], "builtin", "", "x", 0.0)
    try:
        store.add_pending(run, 1, "b", [], "builtin", "", "y", 0.0)
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("a second row for generation 1 was accepted")
    assert [r.name for r in store.records(run)] == ["a"]
