"""The evolution loop end to end, in real subprocesses: commits, budgets, kill -9 and resume,
and candidates that crash, hang or exhaust memory; then in process, with a scripted
evaluation: harness errors, and what an evaluation does to candidates/<task>/ undone."""
from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from avo_harness.evolve import evaluate as evaluate_module
from avo_harness.evolve import loop, scheduler
from avo_harness.evolve.cascade import Cascade
from avo_harness.evolve.evaluate import EvalSettings, Evaluation, command, evaluate
from avo_harness.evolve.fitness import Fitness, harness_fault, out_of_time
from avo_harness.evolve.lineage import START, Lineage, source_hash
from avo_harness.evolve.loop import Evolution
from avo_harness.evolve.operators import Operator, Proposal, VariationContext
from avo_harness.evolve.progress import Progress
from avo_harness.options import EvolveSettings
from avo_harness.tasks import get_task

# A plain-torch candidate with tunables: fast to evaluate, honest, and unusual (no Triton).
CHUNKED = '''
import torch

TUNABLES = {
    "CHUNK": {"value": 16, "choices": [8, 16, 32, 64]},
    "UPCAST": {"value": True, "choices": [True]},
}
CONSTRAINTS = ["CHUNK >= 8"]


def attention(q, k, v, causal=False, sm_scale=None):
    chunk = TUNABLES["CHUNK"]["value"]
    g = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(g, 1).double()
    v = v.repeat_interleave(g, 1).double()
    nq, nk = q.shape[2], k.shape[2]
    scale = sm_scale if sm_scale is not None else q.shape[-1] ** -0.5
    out = torch.empty(q.shape, dtype=torch.float64)
    for start in range(0, nq, chunk):
        s = q[:, :, start:start + chunk].double() @ k.transpose(-1, -2) * scale
        if causal:
            i = torch.arange(start, min(nq, start + chunk))[:, None]
            s = s.masked_fill(torch.arange(nk)[None, :] > i + nk - nq, float("-inf"))
        out[:, :, start:start + chunk] = torch.softmax(s, -1).nan_to_num(0.0) @ v
    return out.to(q.dtype)
'''
FAST = ["--avo-examples", "2", "--avo-device", "cpu"]


def _project(tmp_path: Path, **candidates: str) -> Path:
    folder = tmp_path / "candidates" / "attention"
    folder.mkdir(parents=True)
    for name, body in candidates.items():
        (folder / f"{name}.py").write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def _pytest(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "avo_harness.plugin", *args],
                          cwd=root, capture_output=True, text=True, timeout=timeout)


def _rows(root: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(root / ".avo" / "lineage.sqlite")
    db.row_factory = sqlite3.Row
    return db.execute("SELECT * FROM candidates ORDER BY id").fetchall()


@pytest.mark.slow
def test_evolve_commits_and_the_committed_candidates_pass(tmp_path: Path) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    result = _pytest(root, "--avo-evolve", "--avo-generations", "2", *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(root)
    assert [r["operator"] for r in rows] == ["seed", "builtin", "builtin"]
    # Interpreter timings are noisy: a proposal measured slow on its first configuration may
    # be cut by the cascade, after passing correctness like the others.
    assert all(r["status"] == "passed" or r["status"] == "cut-slower"
               and r["reason"].startswith("cut: slower") for r in rows), [dict(r) for r in rows]
    assert rows[0]["status"] == "passed"
    assert "generation budget reached (2)" in result.stdout
    committed = [r for r in rows if r["committed"] and r["operator"] != "seed"]
    for row in committed:
        path = root / "candidates" / "attention" / f"{row['name']}.py"
        assert source_hash(path.read_text()) == row["source_hash"]
    # Every proposal changed exactly the tunables its rationale names, and none repeats.
    assert len({r["source_hash"] for r in rows}) == len(rows)
    gate = _pytest(root, "candidates/attention", "--avo-examples", "2")
    assert gate.returncode == 0, gate.stdout
    lineage = _pytest(root, "--avo-lineage")
    assert lineage.returncode == 0 and "evo_r1_g001" in lineage.stdout


@pytest.mark.slow
def test_sigkill_mid_evaluation_then_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    args = ["--avo-evolve", "--avo-generations", "3", *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "avo_harness.plugin", *args],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    staged = root / ".avo" / "staging" / "candidates" / "attention"
    deadline = time.monotonic() + 300
    # Wait until a proposed candidate is under evaluation, then kill the whole group.
    while time.monotonic() < deadline and not list(staged.glob("evo_*.py")):
        time.sleep(0.05)
    assert list(staged.glob("evo_*.py")), "the loop never staged a candidate"
    proc.send_signal(signal.SIGKILL)
    subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
    proc.wait()
    before = _rows(root)
    assert before[-1]["status"] == "pending"

    result = _pytest(root, "--avo-evolve", "--avo-resume", *args[1:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was never judged" in result.stdout
    rows = _rows(root)
    assert [r["generation"] for r in rows] == [0, 1, 2, 3]
    # (a proposal timed slow in the noisy interpreter may be cut: judged all the same)
    assert all(r["status"] in ("passed", "failed", "cut-slower") for r in rows)
    assert rows[-1]["run_id"] == before[0]["run_id"]
    # The interrupted candidate kept its row and its source; nothing was proposed twice.
    assert rows[len(before) - 1]["source_hash"] == before[-1]["source_hash"]
    assert len({r["source_hash"] for r in rows}) == len(rows)
    for row in rows:
        if row["committed"]:
            path = root / "candidates" / "attention" / f"{row['name']}.py"
            assert source_hash(path.read_text()) == row["source_hash"]


@pytest.mark.slow
def test_resume_restores_a_committed_file_that_went_missing(tmp_path: Path) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    assert _pytest(root, "--avo-evolve", "--avo-generations", "1", *FAST).returncode == 0
    seed_row = _rows(root)[0]
    (root / "candidates" / "attention" / "seed.py").unlink()
    result = _pytest(root, "--avo-resume", "--avo-generations", "1", *FAST)  # implies evolve
    assert result.returncode == 0, result.stdout
    restored = root / "candidates" / "attention" / "seed.py"
    assert source_hash(restored.read_text()) == seed_row["source_hash"]


@pytest.mark.slow
def test_a_store_given_in_two_words_cannot_move_the_project(tmp_path: Path) -> None:
    """pytest reads ``--avo-store PATH``'s PATH as a test path when PATH exists, and its
    rootdir moves: a resume restored and committed candidates into the wrong folder."""
    root = _project(tmp_path / "project", seed=CHUNKED)
    store = tmp_path / "store"
    first = _pytest(root, "--avo-evolve", "--avo-generations", "1", "--avo-store", str(store),
                    *FAST)
    assert first.returncode == 0, first.stdout + first.stderr
    seed = root / "candidates" / "attention" / "seed.py"
    seed.unlink()
    again = _pytest(root, "--avo-resume", "--avo-generations", "1", "--avo-store", str(store),
                    *FAST)
    assert again.returncode == 4, again.stdout
    assert "write --avo-store=PATH as one word" in again.stderr
    assert not (tmp_path / "candidates").exists() and not seed.exists()
    joined = _pytest(root, "--avo-resume", "--avo-generations", "1", f"--avo-store={store}",
                     *FAST)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    # Restored where it was, and readable as any file the user writes (mkstemp's is 0600).
    umask = os.umask(0o22)
    os.umask(umask)
    assert seed.exists() and seed.stat().st_mode & 0o777 == 0o666 & ~umask


CRASH = "import os\n" + CHUNKED.replace('    chunk = TUNABLES["CHUNK"]["value"]',
                                         '    os.abort()')
HANG = "import time\n" + CHUNKED.replace('    chunk = TUNABLES["CHUNK"]["value"]',
                                         '    time.sleep(3600)')
HOG = CHUNKED.replace('    chunk = TUNABLES["CHUNK"]["value"]',
                      '    hog = torch.ones(8 * 2**30, dtype=torch.uint8)')


@pytest.mark.slow
def test_crash_hang_and_oom_candidates_are_recorded_failed_with_reasons(tmp_path: Path) -> None:
    root = _project(tmp_path, crash=CRASH, hang=HANG, hog=HOG)
    result = _pytest(root, "--avo-evolve", "--avo-generations", "0", "--avo-timeout", "5",
                     "--avo-memory-limit", "3", *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    reasons = {r["name"]: r["reason"] for r in _rows(root)}
    assert all(r["status"] == "failed" and not r["committed"] for r in _rows(root))
    assert "crash" in reasons["crash"] and "SIGABRT" in reasons["crash"]
    assert "timeout" in reasons["hang"] and "timed out" in reasons["hang"]
    assert "raised" in reasons["hog"] and "memory" in reasons["hog"].lower()


@pytest.mark.slow
def test_an_evaluation_that_outlives_its_budget_is_killed_and_recorded(tmp_path: Path) -> None:
    root = _project(tmp_path, hang=HANG)
    result = _pytest(root, "--avo-evolve", "--avo-generations", "0", "--avo-eval-timeout", "8",
                     *FAST)
    assert result.returncode == 0, result.stdout
    (row,) = _rows(root)
    assert row["status"] == "failed" and "evaluation timed out after 8 s" in row["reason"]


@pytest.mark.slow
def test_a_store_that_is_not_one_fails_in_one_line_and_is_left_as_it_is(
        tmp_path: Path) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    store = root / ".avo" / "lineage.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"notes, not a database")
    for flag in ("--avo-evolve", "--avo-lineage", "--avo-html=report"):
        result = _pytest(root, flag, *FAST)
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 4 and errors == [
            f"ERROR: {flag.split('=')[0]}: {store} is not a lineage store (sqlite: file is not "
            "a database); move it aside or choose another --avo-store"], result.stderr
    assert store.read_bytes() == b"notes, not a database"
    assert sorted(p.name for p in store.parent.iterdir()) == ["lineage.sqlite"]


@pytest.mark.slow
def test_report_is_the_fitness_the_lineage_keeps(tmp_path: Path) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    assert _pytest(root, "--avo-evolve", "--avo-generations", "0", *FAST).returncode == 0
    lineage = Lineage(root / ".avo")
    (record,) = lineage.records()
    lineage.close()
    assert record.report is not None and record.report["schema"] == "avo-harness/report/1"
    entry = next(iter(record.report["candidates"].values()))
    assert record.scores == {name: b["tflops"] for name, b in entry["benchmarks"].items()}
    assert json.dumps(record.scores)


# In-process runs of the loop with a scripted evaluation: what it does with each outcome and
# with what an evaluation leaves behind in candidates/<task>/, without running candidates.
PASSING = Fitness(True, None, {"a": 1.0}, 1.0)


class _Scripted:
    """Proposes CHUNKED with a distinct comment per generation, the first committed its parent."""

    name = "scripted"

    def propose(self, context: VariationContext) -> Proposal:
        return Proposal(f"# generation {context.generation}\n{CHUNKED}",
                        [context.committed()[0].id], "scripted")


def _evolution(root: Path, lineage: Lineage, generations: int, run_id: int | None = None, *,
               time_budget_s: float = 0.0, optimism: float = 1.5,
               operator: Operator | None = None) -> tuple[Evolution, io.StringIO]:
    """Run ``run_id`` again (as --avo-resume does), or a new run."""
    store = root / ".avo"
    settings = EvolveSettings("attention", "scripted", generations, time_budget_s, 0.0, 0, 0,
                              store, run_id is not None, 60.0, 0.0, optimism)
    out = io.StringIO()
    evolution = Evolution(get_task("attention"), settings,
                          EvalSettings("cpu", 2, 5.0, 60.0, 3.0, root), lineage,
                          run_id or lineage.start_run("attention", {}), operator or _Scripted(),
                          root / "candidates" / "attention", store / "staging",
                          Progress(Console(file=out, width=400)))
    return evolution, out


def _script(monkeypatch: pytest.MonkeyPatch,
            steps: dict[str, Callable[[Path], Fitness]]) -> list[dict[str, Any]]:
    """Evaluate a candidate by its step (called with the evaluated file), else pass it.
    Returns what each evaluation was given, in order."""
    given: list[dict[str, Any]] = []

    def evaluate(path: Path, settings: EvalSettings, *, cascade: Cascade | None = None,
                 time_left_s: float | None = None, on_progress: Any = None,
                 placement: Any = None) -> Evaluation:
        given.append({"name": path.stem, "cascade": cascade, "time_left_s": time_left_s})
        return Evaluation(steps.get(path.stem, lambda _: PASSING)(path), None, 0.0)
    monkeypatch.setattr(scheduler, "evaluate", evaluate)
    return given


@pytest.fixture
def lineage(tmp_path: Path) -> Iterator[Lineage]:
    store = Lineage(tmp_path / ".avo")
    yield store
    store.close()


def test_a_harness_error_is_not_the_candidates_and_resume_evaluates_it_again(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    _script(monkeypatch, {"evo_r1_g001": lambda _: harness_fault("sandbox did not start")})
    evolution, out = _evolution(root, lineage, 2)
    evolution.run()
    _, faulted, passed = lineage.records(evolution.run_id)
    assert faulted.outcome == "harness-error" and faulted.reason == (
        "harness error: sandbox did not start")
    assert not (root / "candidates" / "attention" / "evo_r1_g001.py").exists()
    assert passed.outcome == "committed" and evolution.failed
    assert ("3 evaluated, 0 failed, 1 not judged for a harness error (--avo-resume evaluates "
            "them again)") in out.getvalue()

    _script(monkeypatch, {})
    again, out = _evolution(root, lineage, 2, evolution.run_id)
    again.run()
    assert "resuming: evo_r1_g001 was not judged (harness error: sandbox did not start)" \
        in out.getvalue()
    assert [r.outcome for r in lineage.records(evolution.run_id)] == ["committed"] * 3
    assert not again.failed


def test_what_an_evaluation_does_to_candidates_is_undone(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED, other=CHUNKED + "\n")
    folder = root / "candidates" / "attention"
    _script(monkeypatch, {})
    first, _ = _evolution(root, lineage, 0)
    first.run()
    (folder / "other.py").write_text("# the user's edit\n")

    def hostile(path: Path) -> Fitness:
        (folder / "seed.py").write_text("hijacked = True\n")
        (folder / "other.py").unlink()
        (folder / "stray.py").write_text("x = 1\n")
        (folder / "pkg").mkdir()
        (folder / "pkg" / "__init__.py").write_text("")
        return PASSING

    _script(monkeypatch, {"evo_r1_g002": hostile})
    resumed, out = _evolution(root, lineage, 1, first.run_id)
    resumed.run()
    lines = out.getvalue().splitlines()
    assert ("warning: candidates/attention/other.py differs from the version the lineage "
            "committed; left as it is") in lines
    during = "during the evaluation of evo_r1_g002"
    assert {f"restored candidates/attention/seed.py: its contents changed {during}",
            f"restored candidates/attention/other.py: it vanished {during}",
            f"removed candidates/attention/pkg: it appeared {during}",
            f"removed candidates/attention/stray.py: it appeared {during}"} <= set(lines)
    assert (folder / "seed.py").read_text() == CHUNKED
    assert (folder / "other.py").read_text() == "# the user's edit\n"
    assert sorted(p.name for p in folder.iterdir()) == ["evo_r1_g002.py", "other.py", "seed.py"]


class _Prefixed:
    """Proposes the committed seed's source with a comment, as a built-in mutation does: a
    source and nothing else."""

    name = "prefixed"

    def propose(self, context: VariationContext) -> Proposal:
        parent = context.committed()[0]
        return Proposal(f"# generation {context.generation}\n{parent.source}", [parent.id],
                        "prefixed")


def test_a_mutation_of_a_seed_is_staged_with_the_seeds_helpers_and_they_are_guarded(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = CHUNKED.replace("TUNABLES = {", "_UNUSED = {").replace("CONSTRAINTS", "_C")
    root = _project(tmp_path, seed="from _chunked import attention  # noqa: F401\n"
                    "TUNABLES = {}\n", _chunked=helper)
    folder = root / "candidates" / "attention"
    beside: list[str | None] = []

    def staged(path: Path) -> Fitness:
        helper_file = path.parent / "_chunked.py"
        beside.append(helper_file.read_text() if helper_file.exists() else None)
        (folder / "_chunked.py").write_text("hijacked = True\n")
        return PASSING

    _script(monkeypatch, {"evo_r1_g001": staged})
    evolution, out = _evolution(root, lineage, 1, operator=_Prefixed())
    evolution.run()
    assert beside == [helper]
    assert ("restored candidates/attention/_chunked.py: its contents changed during the "
            "evaluation of evo_r1_g001") in out.getvalue()
    assert (folder / "_chunked.py").read_text() == helper


def test_a_candidate_that_rewrites_its_own_file_is_failed_for_tampering(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED, rewrites=CHUNKED + "\n")

    def rewrite(path: Path) -> Fitness:
        path.write_text(f"# faster, honest\n{CHUNKED}")
        return Fitness(True, None, {"a": 99.0}, 99.0)

    _script(monkeypatch, {"rewrites": rewrite, "evo_r1_g002": rewrite})
    evolution, out = _evolution(root, lineage, 1)
    evolution.run()
    records = {r.name: r for r in lineage.records(evolution.run_id)}
    assert records["rewrites"].reason == (
        "tampering: its own file candidates/attention/rewrites.py (a starting candidate, "
        f"operator {START!r}) changed during its evaluation")
    assert records["evo_r1_g002"].reason == (
        "tampering: its staged copy evo_r1_g002.py changed during its evaluation")
    assert all(records[n].outcome == "failed" and records[n].geomean == 0.0
               for n in ("rewrites", "evo_r1_g002"))
    folder = root / "candidates" / "attention"
    assert (folder / "rewrites.py").read_text() == CHUNKED + "\n"
    assert not (folder / "evo_r1_g002.py").exists()
    assert "2 failed" in out.getvalue()


def test_an_evaluation_without_a_report_is_a_harness_error(tmp_path: Path) -> None:
    settings = EvalSettings("cpu", 2, 5.0, 60.0, -1.0, tmp_path)  # pytest refuses the limit
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    fitness = evaluate(tmp_path / "candidates" / "attention" / "none.py", settings).fitness
    assert fitness.harness_error and fitness.reason.startswith("harness error: pytest exited")


# The cascade: given to a proposal's evaluation once something is committed, never to a seed.
FAST_SEED = Fitness(True, None, {"a": 2.0, "b": 8.0}, 4.0)
CUT = Fitness(False, "cut: slower (1 of 2 configurations timed)", {"a": 3.0}, 0.0, cut="slower")
WRONG = Fitness(False, "correctness: tolerance: wrong", {"a": 0.0, "b": 0.0}, 0.0)


def test_the_cascade_goes_to_proposals_once_something_is_committed(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED, wrong=CHUNKED + "\n")
    given = _script(monkeypatch, {"seed": lambda _: FAST_SEED, "wrong": lambda _: WRONG,
                                  "evo_r1_g002": lambda _: CUT})
    evolution, out = _evolution(root, lineage, 3)
    evolution.run()
    cascades = {g["name"]: g["cascade"] for g in given}
    assert cascades["seed"] is None and cascades["wrong"] is None
    assert cascades["evo_r1_g002"] == Cascade(4.0, {"a": 2.0, "b": 8.0}, 1.5)
    # What a cut candidate was timed at counts towards the lineage's best.
    assert cascades["evo_r1_g003"] == cascades["evo_r1_g004"] == Cascade(
        4.0, {"a": 3.0, "b": 8.0}, 1.5)
    cut = lineage.records(evolution.run_id)[2]
    assert (cut.outcome, cut.scores, cut.geomean) == ("cut-slower", {"a": 3.0}, 0.0)
    assert not (root / "candidates" / "attention" / "evo_r1_g002.py").exists()
    text = out.getvalue()
    assert "gen   2 evo_r1_g002: cut: slower (1 of 2 configurations timed); geomean -;" in text
    assert "5 evaluated, 1 failed, 1 cut short;" in text and not evolution.failed
    # --avo-lineage's table: the label, the reason and the rates timed before the cut.
    table = io.StringIO()
    Progress(Console(file=table, width=400)).table("run", lineage.records(evolution.run_id), 4.0)
    row = next(line for line in table.getvalue().splitlines() if "evo_r1_g002" in line)
    assert "cut: slower" in row and "│ -  " in row
    assert "scripted [cut: slower (1 of 2 configurations timed): a 3]" in row
    assert "[correctness: tolerance: wrong]" in table.getvalue()


class _Orphans:
    """Proposes without parents, so the run goes on with nothing committed."""

    name = "orphans"

    def propose(self, context: VariationContext) -> Proposal:
        return Proposal(f"# generation {context.generation}\n{CHUNKED}", [], "orphan")


@pytest.mark.parametrize("optimism", [1.5, 0.0])
def test_no_cascade_without_a_committed_best_or_with_optimism_zero(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch,
        optimism: float) -> None:
    root = _project(tmp_path, wrong=CHUNKED)
    given = _script(monkeypatch, {"wrong": lambda _: WRONG})
    evolution, _ = _evolution(root, lineage, 2, optimism=optimism, operator=_Orphans())
    evolution.run()
    # The first proposal passes with nothing committed before it; the second has a bar.
    assert [g["name"] for g in given] == ["wrong", "evo_r1_g001", "evo_r1_g002"]
    assert [g["cascade"] is not None for g in given] == [False, False, bool(optimism)]


# Budgets that hold: a clock the evaluations and the operator advance, so nothing waits.
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _timed(monkeypatch: pytest.MonkeyPatch, clock: _Clock,
           seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Evaluations that pass and take their seconds (30 by default) on ``clock``, or end
    where the time left ends them, as evaluate does."""
    given: list[dict[str, Any]] = []

    def evaluate(path: Path, settings: EvalSettings, *, cascade: Cascade | None = None,
                 time_left_s: float | None = None, on_progress: Any = None,
                 placement: Any = None) -> Evaluation:
        given.append({"name": path.stem, "time_left_s": time_left_s})
        took = seconds.get(path.stem, 30.0)
        if time_left_s is not None and took > time_left_s:
            clock.now += time_left_s
            return Evaluation(out_of_time(time_left_s), None, time_left_s)
        clock.now += took
        return Evaluation(PASSING, None, took)
    monkeypatch.setattr(scheduler, "evaluate", evaluate)
    monkeypatch.setattr(loop, "time", SimpleNamespace(monotonic=clock.monotonic))
    return given


class _Slow(_Scripted):
    def __init__(self, clock: _Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def propose(self, context: VariationContext) -> Proposal:
        self.clock.now += self.seconds
        return super().propose(context)


def test_no_evaluation_starts_that_the_time_left_cannot_finish(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    clock = _Clock()
    given = _timed(monkeypatch, clock, {})
    evolution, _ = _evolution(root, lineage, 10, time_budget_s=100.0)
    reason = evolution.run()
    # 30 s each: after three, 10 s are left, and no fourth is proposed.
    assert [(g["name"], g["time_left_s"]) for g in given] == [
        ("seed", 100.0), ("evo_r1_g001", 70.0), ("evo_r1_g002", 40.0)]
    assert reason == "time budget: 10 s left, less than an evaluation takes (the longest of " \
                     "this run's proposals: 30 s)"
    assert len(lineage.records(evolution.run_id)) == 3 and clock.now - 1000.0 == 90.0


def test_the_estimate_forgets_the_starting_candidates_once_a_proposal_is_timed(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    clock = _Clock()
    # The seed pays for the cold compiles and the calibration: 60 s; proposals take 20 s.
    given = _timed(monkeypatch, clock, {"seed": 60.0, **{f"evo_r1_g00{i}": 20.0
                                                          for i in range(1, 10)}})
    evolution, _ = _evolution(root, lineage, 10, time_budget_s=125.0)
    reason = evolution.run()
    # After the seed, 65 s are left (more than 60): a proposal; after it the estimate is
    # its 20 s, not the seed's 60, so two more start.
    assert [g["name"] for g in given] == ["seed", "evo_r1_g001", "evo_r1_g002", "evo_r1_g003"]
    assert reason == "time budget: 5 s left, less than an evaluation takes (the longest of " \
                     "this run's proposals: 20 s)"


@pytest.mark.parametrize("scores, names, reason", [
    # One of the two configurations timed in 20 s: as if timed in full, 40 s.
    ({"a": 0.5}, ["seed", "evo_r1_g001", "evo_r1_g002"], "proposals: 40 s"),
    # None timed: it says nothing of a full evaluation, and the seed's 60 s stand.
    ({}, ["seed", "evo_r1_g001"], "evaluations: 60 s"),
])
def test_a_proposal_cut_as_slower_counts_in_the_estimate_as_if_timed_in_full(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch,
        scores: dict[str, float], names: list[str], reason: str) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    clock = _Clock()
    given = _timed(monkeypatch, clock, {"seed": 60.0})
    timed = scheduler.evaluate

    def cut_after_20_s(path: Path, settings: EvalSettings, **kwargs: Any) -> Evaluation:
        if path.stem == "seed":
            return timed(path, settings, **kwargs)
        given.append({"name": path.stem})
        clock.now += 20.0
        return Evaluation(Fitness(False, "cut: slower", scores, 0.0, cut="slower"), None, 20.0)

    monkeypatch.setattr(scheduler, "evaluate", cut_after_20_s)
    evolution, _ = _evolution(root, lineage, 10, time_budget_s=125.0)
    said = evolution.run()
    assert [g["name"] for g in given] == names
    assert {r.status for r in lineage.records(evolution.run_id)[1:]} == {"cut-slower"}
    assert said.endswith(f"(the longest of this run's {reason})")


def test_a_proposal_the_time_left_cannot_evaluate_waits_for_resume(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    clock = _Clock()
    given = _timed(monkeypatch, clock, {})
    evolution, out = _evolution(root, lineage, 10, time_budget_s=100.0,
                                operator=_Slow(clock, 45.0))
    reason = evolution.run()
    assert [g["name"] for g in given] == ["seed"]
    assert reason.startswith("time budget: 25 s left, less than an evaluation takes")
    assert [r.status for r in lineage.records(evolution.run_id)] == ["passed", "pending"]
    assert "1 evaluated, 0 failed, 1 left for --avo-resume to evaluate;" in out.getvalue()

    again, out = _evolution(root, lineage, 1, evolution.run_id, time_budget_s=100.0)
    again.run()
    assert "resuming: evo_r1_g001 was never judged; evaluating it" in out.getvalue()
    assert lineage.records(evolution.run_id)[1].outcome == "committed"


def test_an_evaluation_in_flight_at_the_time_limit_is_cut_and_resumed(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    clock = _Clock()
    given = _timed(monkeypatch, clock, {"evo_r1_g001": 200.0})
    evolution, out = _evolution(root, lineage, 10, time_budget_s=100.0)
    reason = evolution.run()
    assert [(g["name"], g["time_left_s"]) for g in given] == [("seed", 100.0),
                                                              ("evo_r1_g001", 70.0)]
    assert reason == "time budget reached (100 s)" and clock.now - 1000.0 == 100.0
    cut = lineage.records(evolution.run_id)[1]
    assert (cut.outcome, cut.committed) == ("cut-time", False)
    assert cut.reason == ("cut: time budget (the evaluation was ended after 70 s, the time the "
                          "run had left)")
    assert not (root / "candidates" / "attention" / "evo_r1_g001.py").exists()
    assert "2 evaluated, 0 failed, 1 cut short;" in out.getvalue() and not evolution.failed

    # Not a verdict: --avo-resume evaluates it again, with the time it needs.
    _timed(monkeypatch, clock, {})
    again, out = _evolution(root, lineage, 1, evolution.run_id, time_budget_s=100.0)
    again.run()
    assert f"resuming: evo_r1_g001 was not judged ({cut.reason}); evaluating it" \
        in out.getvalue()
    assert lineage.records(evolution.run_id)[1].outcome == "committed"


# evaluate() itself: the command line, the cascade's file, and what a kill leaves behind.
# Stands in for pytest: starts a child in its group, notes it and its TMPDIR, and waits.
HOLDS_ON = '''
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1], "w") as out:
    out.write(f"{child.pid} {os.environ['TMPDIR']}")
time.sleep(60)
'''


def _gone(pid: int) -> bool:
    """Dead (or a zombie nobody has reaped yet) within a few seconds."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("time_left_s, eval_timeout_s, reason", [
    (1.0, 60.0, ("cut: time budget (the evaluation was ended after 1 s, the time the run had "
                 "left)")),
    (60.0, 1.0, "evaluation timed out after 1 s"),
])
def test_an_evaluation_ended_early_leaves_no_process_and_no_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, time_left_s: float,
        eval_timeout_s: float, reason: str) -> None:
    side = tmp_path / "side.txt"
    monkeypatch.setattr(evaluate_module, "command",
                        lambda *_: [sys.executable, "-c", HOLDS_ON, str(side)])
    settings = EvalSettings("cpu", 2, 5.0, eval_timeout_s, 3.0, tmp_path)
    fitness = evaluate(tmp_path / "x.py", settings, time_left_s=time_left_s).fitness
    assert fitness.reason == reason and not fitness.passed and not fitness.harness_error
    assert fitness.cut == ("time budget" if time_left_s < eval_timeout_s else None)
    pid, folder = side.read_text().split()
    assert not Path(folder).parent.exists()  # the evaluation's folder, with what it wrote
    assert _gone(int(pid))


def test_an_evaluation_is_given_the_cascade_as_a_file_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cascade = Cascade(4.0, {"a": 2.0, "b": 8.0}, 1.5)
    settings = EvalSettings("cpu", 2, 5.0, 60.0, 3.0, tmp_path)
    seen: dict[str, Any] = {}

    def pytest_writing_a_report(path: Path, settings: EvalSettings, report: Path,
                                given: Path | None, progress: Path | None = None) -> list[str]:
        seen.update(argv=command(path, settings, report, given), folder=report.parent,
                    cascade=given.read_text() if given else None)
        entry = {"correctness": {"outcome": "passed"}, "benchmarks": {
            "a": {"outcome": "passed", "tflops": 1.0}, "b": cascade.cut_entry({"a": 1.0}, ["b"])}}
        write = "import json, sys; json.dump(json.loads(sys.argv[1]), open(sys.argv[2], 'w'))"
        return [sys.executable, "-c", write, json.dumps({"candidates": {"x.py": entry}}),
                str(report)]

    monkeypatch.setattr(evaluate_module, "command", pytest_writing_a_report)
    fitness = evaluate(tmp_path / "x.py", settings, cascade=cascade).fitness
    assert seen["argv"][-2:] == ["--avo-cascade", str(seen["folder"] / "cascade.json")]
    assert seen["cascade"] == cascade.to_json() and not seen["folder"].exists()
    assert fitness.cut == "slower" and fitness.scores == {"a": 1.0}
    evaluate(tmp_path / "x.py", settings)
    assert seen["cascade"] is None and "--avo-cascade" not in seen["argv"]


def test_each_evaluation_line_says_where_its_time_went(tmp_path: Path, lineage: Lineage,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    phases = {"start": 3.14, "compile": 12.0, "correctness": 4.2, "timing": 9.8, "total": 29.1}
    report = {"candidates": {"seed.py": {"phases_s": phases}}}
    monkeypatch.setattr(scheduler, "evaluate",
                        lambda *_, **__: Evaluation(PASSING, report, 31.04))
    evolution, out = _evolution(root, lineage, 0)
    evolution.run()
    assert ("; eval 31.0 s (start 3.1 s, compile 12.0 s, correctness 4.2 s, timing 9.8 s); "
            in out.getvalue())


class _Paying:
    """An operator that pays per call, reporting each as it goes; ``fail`` steps end in an
    API failure after spending."""

    name = "paying"

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def propose(self, context: VariationContext) -> Proposal:
        from avo_harness.evolve.operators import StepAborted

        assert context.spend is not None
        context.spend(1_000, 100, 0.01)
        context.spend(2_000, 200, 0.02)
        if self.fail:
            raise StepAborted("anthropic API: 500 api_error: down", tokens_in=3_000,
                              tokens_out=300, cost_usd=0.03)
        seed = next(r for r in context.records if r.operator == "seed")
        return Proposal(seed.source + f"\n# g{context.generation}\n", [seed.id], "a copy",
                        tokens_in=3_500, tokens_out=300, cost_usd=0.035)  # 500 unreported


def test_a_step_the_api_failed_spends_but_uses_no_generation(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    _script(monkeypatch, {})
    failing, _ = _evolution(root, lineage, 1, operator=_Paying(fail=True))
    failing.run()
    assert failing.failed
    run = failing.run_id
    assert [r.operator for r in lineage.records(run)] == ["seed"]  # no generation was used
    assert lineage.spent(run) == (3_000, 300, pytest.approx(0.03))
    events = lineage._db.execute("SELECT kind, detail FROM events").fetchall()
    assert [(k, json.loads(d)["reason"]) for k, d in events] == [
        ("step-aborted", "anthropic API: 500 api_error: down")]
    resumed, out = _evolution(root, lineage, 1, run, operator=_Paying(fail=False))
    resumed.run()
    assert [r.operator for r in lineage.records(run)] == ["seed", "paying"]
    assert lineage.spent(run) == (6_500, 600, pytest.approx(0.065))  # nothing counted twice
    assert "generation budget reached (1)" in out.getvalue()


def test_an_evaluation_is_asked_for_its_stress_runs_and_compile_server(tmp_path: Path) -> None:
    settings = EvalSettings("cuda", 2, 5.0, 60.0, 3.0, tmp_path, stress=3)
    argv = command(tmp_path / "a.py", settings, tmp_path / "r.json", None)
    assert argv[argv.index("--avo-stress") + 1] == "3"
    plain = command(tmp_path / "a.py", EvalSettings("cpu", 2, 5.0, 60.0, 3.0, tmp_path),
                    tmp_path / "r.json", None)
    assert plain[plain.index("--avo-stress") + 1] == "0"
    assert plain[plain.index("--avo-compile-server") + 1] == "on"
    own = command(tmp_path / "a.py", EvalSettings("cuda", 2, 5.0, 60.0, 3.0, tmp_path,
                                                  compile_server=False), tmp_path / "r.json", None)
    assert own[own.index("--avo-compile-server") + 1] == "off"
    assert "--avo-store" not in own
    stored = command(tmp_path / "a.py", EvalSettings(
        "cuda", 2, 5.0, 60.0, 3.0, tmp_path, store=tmp_path / "s"), tmp_path / "r.json", None)
    assert stored[stored.index("--avo-store") + 1] == str(tmp_path / "s")


def test_folders_a_killed_controller_left_are_swept_and_live_ones_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate_module.tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / f"avo-eval-{dead}-abc").mkdir()
    (tmp_path / f"avo-paired-{dead}-def").mkdir()
    (tmp_path / "avo-ray-123-x").mkdir()  # not a harness process's folder: left alone
    with evaluate_module.harness_folder("eval") as mine:
        assert evaluate_module.sweep() == 2
        assert Path(mine).is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avo-ray-123-x"]


def test_an_evaluation_runs_the_loop_s_command_not_the_session_s_pytest_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PYTEST_ADDOPTS=-n 4, a worker's identity (pytest-benchmark then turns itself off) or
    # plugins switched off would change every evaluation behind the loop's back.
    for name, value in [("PYTEST_ADDOPTS", "-n 4"), ("PYTEST_XDIST_WORKER", "gw1"),
                        ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1"), ("PYTEST_PLUGINS", "x")]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AVO_KEPT", "yes")
    show = "import json, os; print(json.dumps(dict(os.environ)))"
    status, output = evaluate_module.run_in(tmp_path, [sys.executable, "-c", show], tmp_path,
                                            evaluate_module.Placement(), 30)
    seen = json.loads(output)
    assert status == 0 and seen["AVO_KEPT"] == "yes"
    assert not [k for k in seen if k.startswith(("PYTEST_ADDOPTS", "PYTEST_XDIST",
                                                 "PYTEST_DISABLE", "PYTEST_PLUGINS"))]
