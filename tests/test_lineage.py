"""The lineage store: transactions, pending rows, and what survives reopening."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from avo_harness.evolve import lineage as lineage_module
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


def test_a_harness_error_is_judged_again_then_once(tmp_path: Path) -> None:
    store = Lineage(tmp_path)
    run = store.start_run("attention", {})
    cid = store.add_pending(run, 0, "a", [], "seed", "", "x", 0.0)
    store.record_evaluation(cid, passed=False, committed=False, reason="harness error: oom",
                            scores=None, geomean=0.0, report=None, eval_s=1.0,
                            harness_error=True)
    (record,) = store.pending(run)
    assert record.status == record.outcome == "harness-error" and not record.committed
    store.record_evaluation(cid, passed=True, committed=True, reason=None, scores={},
                            geomean=2.0, report=None, eval_s=1.0)
    store.record_evaluation(cid, passed=False, committed=False, reason="late", scores=None,
                            geomean=0.0, report=None, eval_s=1.0, harness_error=True)
    (record,) = store.records(run)
    assert record.outcome == "committed" and list(store.pending(run)) == []


# The candidates table as stores before harness-error have it (PRAGMA user_version 0).
OLD_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, task TEXT NOT NULL, started TEXT NOT NULL,
                   settings TEXT NOT NULL, finished TEXT, stop_reason TEXT);
CREATE TABLE candidates (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    generation INTEGER NOT NULL, name TEXT NOT NULL, parents TEXT NOT NULL,
    operator TEXT NOT NULL, rationale TEXT NOT NULL, source TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'passed', 'failed')),
    committed INTEGER NOT NULL DEFAULT 0, reason TEXT, scores TEXT, geomean REAL, report TEXT,
    proposed_at TEXT NOT NULL, evaluated_at TEXT, operator_s REAL, eval_s REAL,
    tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0, UNIQUE (run_id, generation));
CREATE TABLE events (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
                     at TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
INSERT INTO runs VALUES (1, 'attention', 't', '{}', NULL, NULL);
INSERT INTO candidates (run_id, generation, name, parents, operator, rationale, source,
                        source_hash, status, committed, proposed_at)
VALUES (1, 0, 'seed', '[]', 'seed', 'start', 'x', 'h', 'passed', 1, 't'),
       (1, 1, 'evo_r1_g001', '[1]', 'builtin', 'try', 'y', 'h2', 'pending', 0, 't');
"""


def test_an_older_store_is_migrated_with_its_rows(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "lineage.sqlite")
    db.executescript(OLD_SCHEMA)
    db.close()
    store = Lineage(tmp_path)
    seed, pending = store.records(1)
    assert (seed.name, seed.outcome, pending.status) == ("seed", "committed", "pending")
    store.record_evaluation(pending.id, passed=False, committed=False, reason="harness error",
                            scores=None, geomean=0.0, report=None, eval_s=1.0,
                            harness_error=True)
    store.close()
    again = Lineage(tmp_path)  # opening a migrated store changes nothing
    assert [r.outcome for r in again.records(1)] == ["committed", "harness-error"]
    with pytest.raises(sqlite3.IntegrityError):
        again.add_pending(1, 1, "twin", [], "builtin", "", "z", 0.0)


def test_a_store_of_version_1_is_migrated_to_take_cuts(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "lineage.sqlite")
    db.executescript(OLD_SCHEMA.replace("'pending', 'passed', 'failed'",
                                        "'pending', 'passed', 'failed', 'harness-error'")
                     + "PRAGMA user_version = 1;")
    db.close()
    store = Lineage(tmp_path)
    _, pending = store.records(1)
    store.record_evaluation(pending.id, passed=False, committed=False,
                            reason="cut: slower (1 of 2 configurations timed)",
                            scores={"a": 1.0}, geomean=0.0, report=None, eval_s=1.0,
                            cut="slower")
    (record,) = [r for r in store.records(1) if r.id == pending.id]
    assert record.outcome == "cut-slower" and record.scores == {"a": 1.0}
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == lineage_module._VERSION
    store.close()


def test_what_an_older_store_s_candidates_spent_moves_to_the_spend_table(
        tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "lineage.sqlite")
    db.executescript(OLD_SCHEMA.replace("'pending', 'passed', 'failed'",
                                        "'pending', 'passed', 'failed', 'harness-error'")
                     + "UPDATE candidates SET tokens_in = 1200, tokens_out = 300, cost_usd = 0.25 "
                       "WHERE generation = 1; PRAGMA user_version = 1;")
    db.close()
    store = Lineage(tmp_path)
    assert store.spent(1) == (1200, 300, 0.25) and store.spent(1, 0) == (0, 0, 0.0)
    store.add_spend(1, 2, 10, 5, 0.01)
    assert store.spent(1) == (1210, 305, 0.26) and store.spent(1, 2) == (10, 5, 0.01)
    store.close()
    assert Lineage(tmp_path).spent(1) == (1210, 305, 0.26)  # kept, and not migrated twice


def test_a_time_budget_cut_is_evaluated_again_a_slower_cut_is_not(tmp_path: Path) -> None:
    store = Lineage(tmp_path)
    run = store.start_run("attention", {})
    slower = store.add_pending(run, 1, "a", [], "builtin", "", "x", 0.0)
    timed_out = store.add_pending(run, 2, "b", [], "builtin", "", "y", 0.0)
    for cid, cut in ((slower, "slower"), (timed_out, "time budget")):
        store.record_evaluation(cid, passed=False, committed=False, reason=f"cut: {cut}",
                                scores={}, geomean=0.0, report=None, eval_s=1.0, cut=cut)
    assert [r.id for r in store.pending(run)] == [timed_out]
    assert [r.outcome for r in store.records(run)] == ["cut-slower", "cut-time"]
    store.record_evaluation(timed_out, passed=True, committed=True, reason=None,
                            scores={"a": 2.0}, geomean=2.0, report=None, eval_s=1.0)
    store.record_evaluation(slower, passed=True, committed=True, reason=None, scores={},
                            geomean=9.0, report=None, eval_s=1.0)
    assert [r.outcome for r in store.records(run)] == ["cut-slower", "committed"]
    store.close()


def test_a_store_of_version_3_keeps_its_spend_and_gains_islands_and_workers(
        tmp_path: Path) -> None:
    store = Lineage(tmp_path)
    run = store.start_run("attention", {})
    cid = store.add_pending(run, 1, "a", [], "builtin", "", "x", 0.0)
    store.add_spend(run, 1, 100, 10, 0.5)
    # Back to version 3: the candidates table without the three newest columns.
    store._db.executescript(
        "ALTER TABLE candidates DROP COLUMN island; ALTER TABLE candidates DROP COLUMN worker; "
        "ALTER TABLE candidates DROP COLUMN eval_started_at; PRAGMA user_version = 3;")
    store.close()
    store = Lineage(tmp_path)
    assert store.spent(run) == (100, 10, 0.5)  # not copied from the rows a second time
    (record,) = store.records(run)
    assert (record.id, record.island, record.worker, record.eval_started_at) == (cid, 0, None,
                                                                                  None)
    began = lineage_module.now()
    store.record_evaluation(cid, passed=True, committed=False, reason=None, scores={"c": 1.0},
                            geomean=1.0, report=None, eval_s=1.0, worker="gpu1",
                            started_at=began)
    other = store.add_pending(run, 2, "b", [], "builtin", "", "y", 0.0, island=2)
    by_id = {r.id: r for r in store.records(run)}
    assert (by_id[cid].worker, by_id[cid].eval_started_at) == ("gpu1", began)
    assert by_id[other].island == 2
    store.close()


def test_events_read_back_in_order_and_by_kind(tmp_path: Path) -> None:
    store = Lineage(tmp_path)
    run = store.start_run("attention", {})
    store.add_event(run, "note", {"text": "one"})
    store.add_event(run, "paired", {"verdict": "tie"})
    store.add_event(run, "note", {"text": "two"})
    assert [e["text"] for e in store.events(run, "note")] == ["one", "two"]
    assert [e["kind"] for e in store.events(run)] == ["note", "paired", "note"]
    assert store.events(run + 1) == []
    store.close()
