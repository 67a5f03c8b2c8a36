"""The lineage store: every evaluated candidate of every run, in one SQLite file.

Each state change is one transaction, and candidate files are derived from it
(written atomically after the row that justifies them is committed), so a run
killed at any instant, ``kill -9`` included, resumes with nothing lost and
nothing evaluated twice: a row still ``pending`` was never judged and is
evaluated again (so is a ``harness-error`` row, which the harness failed to
judge, and a ``cut-time`` row, whose evaluation the run's time budget ended); a
committed row's file is rewritten if it went missing.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..results import Report
from .fitness import SLOWER, TIME_BUDGET

#: A candidate's status: not judged yet; correct; wrong; not judged because the
#: harness itself failed (its inputs, references, sandbox), which is not the candidate's
#: fault; correct but cut by the cascade, as it could not reach the commit bar (judged:
#: it is not committed); or cut by the run's time budget (not judged). Its outcome adds
#: "committed" (passed, and kept in candidates/<task>/).
PENDING, PASSED, FAILED, HARNESS_ERROR = "pending", "passed", "failed", "harness-error"
CUT_SLOWER, CUT_TIME = "cut-slower", "cut-time"
STATUSES = (PENDING, PASSED, FAILED, HARNESS_ERROR, CUT_SLOWER, CUT_TIME)
OUTCOMES = ("committed",) + STATUSES
#: How reports and tables name each outcome.
LABELS = {"committed": "committed", PASSED: "passed, not faster", FAILED: "failed",
          PENDING: "pending", HARNESS_ERROR: "not judged (harness error)",
          CUT_SLOWER: "cut: slower", CUT_TIME: "cut: time budget"}
#: The label of an outcome that says only that the candidate was correct but not faster.
NOT_FASTER = LABELS[PASSED]
#: The operator of the starting population: the files in candidates/<task>/ a run starts
#: from (every speedup is against the fastest of them, ``best_start``).
START = "seed"
#: How a table names the reference of its speedups when it has no candidate's name to give:
#: the fastest starting candidate (``best_start``), never the word for the operator above.
BEST_START = "best start"
#: The statuses a resumed run evaluates (again): nothing has judged the candidate yet.
UNJUDGED = (PENDING, HARNESS_ERROR, CUT_TIME)
#: The status of an evaluation cut short, by ``Fitness.cut``.
_CUT_STATUS = {SLOWER: CUT_SLOWER, TIME_BUDGET: CUT_TIME}

#: PRAGMA user_version of the schema below; a store of version 0 predates harness-error,
#: one of version 1 the cut statuses, one of version 2 the spend table, one of version 3
#: islands and where and when each evaluation ran.
_VERSION = 4
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    started TEXT NOT NULL,
    settings TEXT NOT NULL,
    finished TEXT,
    stop_reason TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    generation INTEGER NOT NULL,
    name TEXT NOT NULL,
    parents TEXT NOT NULL,
    operator TEXT NOT NULL,
    rationale TEXT NOT NULL,
    source TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(map(repr, STATUSES))})),
    committed INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    scores TEXT,
    geomean REAL,
    report TEXT,
    proposed_at TEXT NOT NULL,
    evaluated_at TEXT,
    operator_s REAL,
    eval_s REAL,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    island INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    eval_started_at TEXT,
    UNIQUE (run_id, generation)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    generation INTEGER NOT NULL,
    at TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL
)
"""


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def now() -> str:
    """The lineage's timestamps: UTC, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclass
class Record:
    """One candidate as the lineage knows it."""

    id: int
    run_id: int
    generation: int
    name: str
    parents: list[int]
    operator: str
    rationale: str
    source: str
    source_hash: str
    status: str
    committed: bool
    reason: str | None
    scores: dict[str, float] | None
    geomean: float | None
    report: dict[str, Any] | None
    operator_s: float | None
    eval_s: float | None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    island: int = 0
    #: The scheduler's slot that evaluated it (``gpu0``, ``ray:<node>``), and when it began.
    worker: str | None = None
    eval_started_at: str | None = None
    evaluated_at: str | None = None

    @property
    def outcome(self) -> str:
        """One of OUTCOMES: committed, or the status (passed: correct but not faster)."""
        return "committed" if self.committed else self.status

    @property
    def starting(self) -> bool:
        """Of the starting population (its operator is ``START``), not a proposal."""
        return self.operator == START

    @property
    def label(self) -> str:
        """How reports and tables name its outcome (``LABELS``)."""
        return LABELS[self.outcome]

    @property
    def result(self) -> Report:
        """The report of its evaluation, read (empty when it has none)."""
        return Report.of(self.report)


def best_committed(records: list[Record]) -> Record | None:
    """The committed record of the highest geomean among ``records`` (the commit rule's
    reference, and every view's "best")."""
    scored = [r for r in records if r.committed and r.geomean]
    return max(scored, key=lambda r: r.geomean or 0.0) if scored else None


def best_start(records: list[Record]) -> Record | None:
    """The starting candidate of the highest geomean among ``records``: what every speedup
    ("1.2x hopper_best") is against, named by its name."""
    scored = [r for r in records if r.starting and r.geomean]
    return max(scored, key=lambda r: r.geomean or 0.0) if scored else None


class LineageError(Exception):
    """The store cannot be opened as one; it is left as it is."""


class Lineage:
    """The store; one instance per process. The controller writes it from its main thread,
    an operator's step thread reports spend through it: one lock serialises them."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "lineage.sqlite"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._create_or_migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LineageError(f"{self.path} is not a lineage store (sqlite: {exc}); move it "
                               "aside or choose another --avo-store") from None

    def _create_or_migrate(self) -> None:
        """One transaction: a new store gets the schema; an older one gets its candidates
        table rebuilt under the current CHECK of statuses (SQLite cannot alter a CHECK)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute("PRAGMA user_version").fetchone()[0] >= _VERSION:
                return
            old = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                   "name = 'candidates'").fetchone() is not None
            spend_existed = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spend'"
            ).fetchone() is not None
            if old:
                self._db.execute("ALTER TABLE candidates RENAME TO candidates_old")
            for statement in _SCHEMA.split(";"):
                self._db.execute(statement)
            if old:
                columns = ", ".join(row["name"] for row in self._db.execute(
                    "PRAGMA table_info(candidates_old)"))
                self._db.execute(f"INSERT INTO candidates ({columns}) SELECT {columns} "
                                 "FROM candidates_old")
                self._db.execute("DROP TABLE candidates_old")
            if old and not spend_existed:
                # Before the spend table, what operators spent was on their candidates' rows.
                self._db.execute(
                    "INSERT INTO spend (run_id, generation, at, tokens_in, tokens_out, cost_usd) "
                    "SELECT run_id, generation, proposed_at, tokens_in, tokens_out, cost_usd "
                    "FROM candidates WHERE tokens_in + tokens_out > 0 OR cost_usd > 0")
            self._db.execute(f"PRAGMA user_version = {_VERSION}")

    def close(self) -> None:
        self._db.close()

    def _tx(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock, self._db:  # one transaction, committed or rolled back as a whole
            self._db.execute("BEGIN IMMEDIATE")
            return self._db.execute(sql, args)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def start_run(self, task: str, settings: dict[str, Any]) -> int:
        cur = self._tx("INSERT INTO runs (task, started, settings) VALUES (?, ?, ?)",
                       (task, now(), json.dumps(settings, sort_keys=True)))
        return int(cur.lastrowid)

    def latest_run(self, task: str) -> int | None:
        rows = self._read("SELECT id FROM runs WHERE task = ? ORDER BY id DESC LIMIT 1", (task,))
        return int(rows[0]["id"]) if rows else None

    def run_settings(self, run_id: int) -> dict[str, Any]:
        return json.loads(self._read("SELECT settings FROM runs WHERE id = ?",
                                     (run_id,))[0]["settings"])

    def finish_run(self, run_id: int, reason: str) -> None:
        self._tx("UPDATE runs SET finished = ?, stop_reason = ? WHERE id = ?",
                 (now(), reason, run_id))

    def add_pending(self, run_id: int, generation: int, name: str, parents: list[int],
                    operator: str, rationale: str, source: str, operator_s: float,
                    tokens_in: int = 0, tokens_out: int = 0, cost_usd: float = 0.0,
                    island: int = 0) -> int:
        cur = self._tx(
            "INSERT INTO candidates (run_id, generation, name, parents, operator, rationale, "
            "source, source_hash, status, proposed_at, operator_s, tokens_in, tokens_out, "
            "cost_usd, island) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, generation, name, json.dumps(parents), operator, rationale, source,
             source_hash(source), PENDING, now(), operator_s, tokens_in, tokens_out, cost_usd,
             island))
        return int(cur.lastrowid)

    def record_evaluation(self, candidate_id: int, *, passed: bool, committed: bool,
                          reason: str | None, scores: dict[str, float] | None,
                          geomean: float | None, report: dict[str, Any] | None,
                          eval_s: float, harness_error: bool = False,
                          cut: str | None = None, worker: str | None = None,
                          started_at: str | None = None) -> None:
        """Judged once: a row that is judged stays so; an unjudged one is updated.
        ``harness_error`` and ``cut`` are the fitness's; ``worker`` and ``started_at``
        (``now()`` when the evaluation began) say where and when it ran."""
        status = (HARNESS_ERROR if harness_error else _CUT_STATUS[cut] if cut
                  else PASSED if passed else FAILED)
        self._tx(
            "UPDATE candidates SET status = ?, committed = ?, reason = ?, scores = ?, "
            "geomean = ?, report = ?, evaluated_at = ?, eval_s = ?, worker = ?, "
            "eval_started_at = ? "
            f"WHERE id = ? AND status IN ({', '.join('?' for _ in UNJUDGED)})",
            (status, int(committed), reason,
             None if scores is None else json.dumps(scores), geomean,
             None if report is None else json.dumps(report), now(), eval_s, worker,
             started_at, candidate_id, *UNJUDGED))

    def add_event(self, run_id: int, kind: str, detail: dict[str, Any]) -> None:
        self._tx("INSERT INTO events (run_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                 (run_id, now(), kind, json.dumps(detail)))

    def events(self, run_id: int, kind: str | None = None) -> list[dict[str, Any]]:
        """The run's events in order (of one ``kind``, or all): ``at``, ``kind`` and the
        detail's keys."""
        rows = self._read("SELECT at, kind, detail FROM events WHERE run_id = ?"
                          + (" AND kind = ?" if kind else "") + " ORDER BY id",
                          (run_id, kind) if kind else (run_id,))
        return [{"at": row["at"], "kind": row["kind"], **json.loads(row["detail"])}
                for row in rows]

    def add_spend(self, run_id: int, generation: int, tokens_in: int, tokens_out: int,
                  cost_usd: float) -> None:
        """What one paid call of an operator cost, kept as soon as it is known."""
        self._tx("INSERT INTO spend (run_id, generation, at, tokens_in, tokens_out, cost_usd) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 (run_id, generation, now(), tokens_in, tokens_out, cost_usd))

    def spent(self, run_id: int, generation: int | None = None) -> tuple[int, int, float]:
        """Prompt tokens, output tokens and dollars the run (or one of its generations)
        spent on operators."""
        where, args = ("run_id = ?", (run_id,)) if generation is None else \
            ("run_id = ? AND generation = ?", (run_id, generation))
        row = self._read("SELECT COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0), "
                         f"COALESCE(SUM(cost_usd), 0.0) FROM spend WHERE {where}", args)[0]
        return int(row[0]), int(row[1]), float(row[2])

    def records(self, run_id: int | None = None, task: str | None = None) -> list[Record]:
        """Candidates in proposal order, of one run or of every run of ``task``."""
        sql = ("SELECT c.* FROM candidates c JOIN runs r ON r.id = c.run_id WHERE 1=1"
               + (" AND c.run_id = ?" if run_id is not None else "")
               + (" AND r.task = ?" if task is not None else "") + " ORDER BY c.id")
        args = tuple(a for a in (run_id, task) if a is not None)
        return [self._record(row) for row in self._read(sql, args)]

    def pending(self, run_id: int) -> Iterator[Record]:
        """What a resumed run evaluates: the run's records that nothing has judged yet."""
        return (r for r in self.records(run_id) if r.status in UNJUDGED)

    @staticmethod
    def _record(row: sqlite3.Row) -> Record:
        return Record(
            id=row["id"], run_id=row["run_id"], generation=row["generation"], name=row["name"],
            parents=json.loads(row["parents"]), operator=row["operator"],
            rationale=row["rationale"], source=row["source"], source_hash=row["source_hash"],
            status=row["status"], committed=bool(row["committed"]), reason=row["reason"],
            scores=None if row["scores"] is None else json.loads(row["scores"]),
            geomean=row["geomean"],
            report=None if row["report"] is None else json.loads(row["report"]),
            operator_s=row["operator_s"], eval_s=row["eval_s"], tokens_in=row["tokens_in"],
            tokens_out=row["tokens_out"], cost_usd=row["cost_usd"], island=row["island"],
            worker=row["worker"], eval_started_at=row["eval_started_at"],
            evaluated_at=row["evaluated_at"])
