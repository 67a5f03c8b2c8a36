"""The scheduler: slots, executors, and the loop's steady state with evaluations in flight."""
from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from avo_harness.evolve import scheduler
from avo_harness.evolve.evaluate import EvalSettings, Evaluation, Placement
from avo_harness.evolve.fitness import Fitness, harness_fault
from avo_harness.evolve.lineage import Lineage
from avo_harness.evolve.loop import Evolution
from avo_harness.evolve.operators import Proposal, VariationContext
from avo_harness.evolve.progress import Progress
from avo_harness.judge import gpu_lock
from avo_harness.options import EvolveSettings
from avo_harness.tasks import get_task

SEED = '''import torch

TUNABLES = {"CHUNK": {"value": 64, "choices": [8, 16, 32, 64, 128, 256, 512]}}


def rmsnorm(x, weight, eps=1e-6):
    chunk = TUNABLES["CHUNK"]["value"]
    xf = x.float()
    n = x.shape[-1]
    squares = sum((xf[..., i:i + chunk] ** 2).sum(-1) for i in range(0, n, chunk))
    return (xf * torch.rsqrt(squares / n + eps)[..., None] * weight.float()).to(x.dtype)
'''
FAST = ["--avo-task", "rmsnorm", "--avo-examples", "2", "--avo-device", "cpu"]
PASSING = Fitness(True, None, {"c": 1.0}, 1.0)


def test_cpu_slots_are_as_many_as_asked_and_one_by_default(tmp_path: Path) -> None:
    assert [s.name for s in scheduler.local_slots(False, None, tmp_path)] == ["cpu0"]
    slots = scheduler.local_slots(False, 3, tmp_path)
    assert [s.name for s in slots] == ["cpu0", "cpu1", "cpu2"]
    assert all(s.placement == Placement() for s in slots)


def test_gpu_slots_are_dealt_in_turn_two_per_gpu_sharing_its_lock(tmp_path: Path) -> None:
    slots = scheduler.local_slots(True, None, tmp_path, gpus=["0", "3"])
    assert [s.name for s in slots] == ["gpu0", "gpu3", "gpu0.1", "gpu3.1"]
    assert [dict(s.placement.env)["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "3", "0", "3"]
    assert slots[0].placement.gpu_lock == slots[2].placement.gpu_lock == tmp_path / "gpu0.lock"
    assert slots[1].placement.gpu_lock != slots[0].placement.gpu_lock
    assert [s.name for s in scheduler.local_slots(True, 1, tmp_path, gpus=["7"])] == ["gpu7"]


def test_a_step_s_placement_is_a_slot_s_one_gpu_after_another(tmp_path: Path) -> None:
    slots = scheduler.local_slots(True, None, tmp_path, gpus=["0", "3"])
    executor = scheduler.LocalExecutor(slots)
    assert [executor.placement_for(lane) for lane in range(5)] == [
        s.placement for s in slots + slots[:1]]
    executor.close()


def test_the_gpu_lock_lets_one_holder_in_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "gpu0.lock"
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait()
        with gpu_lock.exclusive(lock):
            order.append("second in")

    thread = threading.Thread(target=second)
    thread.start()
    with gpu_lock.exclusive(lock):
        inside.set()
        time.sleep(0.3)
        order.append("first out")
    thread.join(5)
    assert order == ["first out", "second in"]
    with gpu_lock.exclusive(None):  # no lock asked for: nothing held
        pass


def _settings(root: Path) -> EvalSettings:
    return EvalSettings("cpu", 2, 5.0, 60.0, 3.0, root)


def test_the_local_executor_runs_its_slots_at_once_and_turns_errors_into_harness_faults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def evaluate(path: Path, settings: EvalSettings, **kwargs: Any) -> Evaluation:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        if path.stem == "broken":
            raise OSError("no space left on device")
        return Evaluation(PASSING, None, 0.3)

    monkeypatch.setattr(scheduler, "evaluate", evaluate)
    executor = scheduler.LocalExecutor(scheduler.local_slots(False, 2, tmp_path))
    record = _record(tmp_path)
    jobs = [scheduler.Job(record, tmp_path / f"{name}.py", _settings(tmp_path), None, None)
            for name in ("fine", "broken")]
    done = [f.result(10) for f in [executor.submit(j, scheduler.unwatched) for j in jobs]]
    executor.close()
    assert peak[0] == 2
    assert done[0].evaluation.fitness.passed and done[0].worker in ("cpu0", "cpu1")
    fault = done[1].evaluation.fitness
    assert fault.harness_error and "OSError: no space left on device" in fault.reason


def _record(tmp_path: Path) -> Any:
    store = Lineage(tmp_path / ".avo")
    run = store.start_run("rmsnorm", {})
    cid = store.add_pending(run, 0, "x", [], "seed", "", "x = 1\n", 0.0)
    (record,) = [r for r in store.records(run) if r.id == cid]
    store.close()
    return record


class _Numbered:
    """Proposes the seed with a distinct comment per generation, its first committed parent."""

    name = "numbered"

    def __init__(self) -> None:
        self.seen_at: list[int] = []

    def propose(self, context: VariationContext) -> Proposal:
        self.seen_at.append(len([r for r in context.records if r.status != "pending"]))
        return Proposal(f"# generation {context.generation}\n{SEED}",
                        [context.committed()[0].id], "numbered")


def _evolution(root: Path, lineage: Lineage, generations: int, workers: int,
               islands: int = 1, migration: int = 6) -> tuple[Evolution, io.StringIO]:
    store = root / ".avo"
    settings = EvolveSettings("rmsnorm", "numbered", generations, 0.0, 0.0, 0, 0, store, False,
                              60.0, 0.0, 0.0, workers=workers, islands=islands,
                              migration=migration, paired_rounds=0, precision_drift=0.0)
    out = io.StringIO()
    folder = root / "candidates" / "rmsnorm"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seed.py").write_text(SEED)
    eval_settings = _settings(root)
    executor = scheduler.LocalExecutor(scheduler.local_slots(False, workers, root))
    evolution = Evolution(get_task("rmsnorm"), settings, eval_settings, lineage,
                          lineage.start_run("rmsnorm", {}), _Numbered(), folder,
                          store / "staging", Progress(Console(file=out, width=400)), executor)
    return evolution, out


@pytest.fixture
def lineage(tmp_path: Path) -> Iterator[Lineage]:
    store = Lineage(tmp_path / ".avo")
    yield store
    store.close()


def _slow_evaluations(monkeypatch: pytest.MonkeyPatch, seconds: float,
                      fail_first: set[str] = frozenset()) -> list[str]:
    """Each evaluation passes after ``seconds`` (a harness error first for ``fail_first``),
    with a geomean rising by generation; returns the names in the order they started."""
    started: list[str] = []
    lock = threading.Lock()

    def evaluate(path: Path, settings: EvalSettings, **kwargs: Any) -> Evaluation:
        with lock:
            again = path.stem in started
            started.append(path.stem)
        time.sleep(seconds)
        if path.stem in fail_first and not again:
            return Evaluation(harness_fault("the worker was lost"), None, seconds)
        rate = 1.0 + len(started) / 100
        return Evaluation(Fitness(True, None, {"c": rate}, rate), None, seconds)

    monkeypatch.setattr(scheduler, "evaluate", evaluate)
    return started


def test_two_workers_overlap_and_the_generation_budget_holds_exactly(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_evaluations(monkeypatch, 0.4)
    evolution, out = _evolution(tmp_path, lineage, 5, workers=2)
    t0 = time.monotonic()
    evolution.run()
    took = time.monotonic() - t0
    records = lineage.records(evolution.run_id)
    assert [r.operator for r in records] == ["seed"] + ["numbered"] * 5
    assert all(r.status == "passed" and r.eval_started_at for r in records)
    assert {r.worker for r in records} == {"cpu0", "cpu1"}
    proposals = records[1:]
    overlapping = [(a.name, b.name) for a in proposals for b in proposals if a.id < b.id
                   and b.eval_started_at < a.evaluated_at]
    assert overlapping, [(r.eval_started_at, r.evaluated_at) for r in proposals]
    assert took < 0.4 * 6 * 0.85  # serial would take 6 evaluations end to end
    assert "generation budget reached (5)" in out.getvalue()


def test_a_harness_error_is_evaluated_once_more_then_judged(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _slow_evaluations(monkeypatch, 0.05, fail_first={"evo_r1_g001"})
    evolution, out = _evolution(tmp_path, lineage, 2, workers=2)
    evolution.run()
    assert started.count("evo_r1_g001") == 2 and started.count("evo_r1_g002") == 1
    assert all(r.status == "passed" for r in lineage.records(evolution.run_id))
    assert "the worker was lost on cpu" in out.getvalue()


def test_islands_keep_their_own_parents_until_the_best_migrates(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_evaluations(monkeypatch, 0.01)
    evolution, out = _evolution(tmp_path, lineage, 6, workers=1, islands=2, migration=3)
    evolution.run()
    records = lineage.records(evolution.run_id)
    assert [r.island for r in records[1:]] == [1, 0, 1, 0, 1, 0]
    migrations = lineage.events(evolution.run_id, "migration")
    assert migrations and "migration:" in out.getvalue()
    first = migrations[0]
    migrant = next(r for r in records if r.id == first["record"])
    assert first["to"] == [1 - migrant.island]
    # An island sees the other's candidates that migrated to it, and none of the rest.
    island = 1 - migrant.island
    view = {r.id for r in evolution._island_view(island)}
    moved = {e["record"] for e in migrations if island in e["to"]}
    assert migrant.id in view and moved <= view
    others = {r.id for r in records if r.island == migrant.island and r.operator != "seed"}
    assert not (others - moved) & view and others - moved


# --- end to end, in a fresh pytest process as a user runs it -------------------------------

def _project(tmp_path: Path) -> Path:
    folder = tmp_path / "candidates" / "rmsnorm"
    folder.mkdir(parents=True)
    (folder / "seed.py").write_text(SEED)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def _rows(root: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(root / ".avo" / "lineage.sqlite")
    db.row_factory = sqlite3.Row
    return db.execute("SELECT * FROM candidates ORDER BY id").fetchall()


def _overlap(rows: list[sqlite3.Row]) -> bool:
    return any(b["eval_started_at"] < a["evaluated_at"] for a in rows for b in rows
               if a["id"] < b["id"] and a["evaluated_at"] and b["eval_started_at"])


def _evaluations_of(root: Path) -> list[int]:
    """Pids of the evaluations (pytest processes writing a report) of the project at root."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--avo-report" in argv and str(root).encode() in b" ".join(argv):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_search_with_two_local_workers_overlaps_and_survives_kill_9(tmp_path: Path) -> None:
    root = _project(tmp_path)
    args = ["--avo-evolve", "--avo-generations", "4", "--avo-workers", "2", *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "avo_harness.plugin", *args],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(_evaluations_of(root)) < 2:
        time.sleep(0.05)
    assert len(_evaluations_of(root)) >= 2, "two evaluations were never in flight at once"
    os.kill(proc.pid, signal.SIGKILL)  # the controller alone: its evaluations die with it
    proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _evaluations_of(root):
        time.sleep(0.1)
    assert not _evaluations_of(root), "an evaluation outlived its controller"
    before = _rows(root)
    assert sum(r["status"] == "pending" for r in before) >= 1

    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "avo_harness.plugin",
                             "--avo-resume", *args[1:]], cwd=root, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(root)
    assert [r["generation"] for r in rows] == list(range(5))
    assert all(r["status"] in ("passed", "cut-slower") for r in rows), [dict(r) for r in rows]
    # What was pending before the kill kept its row and its source.
    for old in before:
        assert rows[old["id"] - 1]["source_hash"] == old["source_hash"]
    assert _overlap(rows[1:]), [(r["eval_started_at"], r["evaluated_at"]) for r in rows]
    assert {r["worker"] for r in rows} == {"cpu0", "cpu1"}


def _kill_first_ray_evaluation(killed: list[int], stop: threading.Event) -> None:
    """Kill -9 the Ray worker running the first evaluation seen (a pytest process staged in
    an ``avo-ray-`` project), as a lost node would; note the evaluation's pid."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes()
                status = (entry / "status").read_text()
            except OSError:
                continue
            if b"--avo-report" in argv and b"avo-ray-" in argv:
                parent = int(next(line.split()[1] for line in status.splitlines()
                                  if line.startswith("PPid:")))
                os.kill(parent, signal.SIGKILL)
                killed.append(int(entry.name))
                return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_search_through_ray_overlaps_holds_its_budget_and_retries_a_lost_worker(
        pytester: pytest.Pytester) -> None:
    import ray

    ray.init(num_gpus=2, num_cpus=2, include_dashboard=False, log_to_driver=False)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_ray_evaluation, args=(killed, stop))
    try:
        root = _project(pytester.path)
        killer.start()
        result = pytester.runpytest_inprocess(
            "-p", "avo_harness.plugin", "--avo-evolve", "--avo-generations", "3", "--avo-ray",
            "auto", "--avo-workers", "2", *FAST)
    finally:
        stop.set()
        killer.join()
        ray.shutdown()
    out = result.stdout.str()
    assert result.ret == 0, out
    assert killed, "no evaluation ran on a Ray worker"
    assert "ray: " in out and "evaluating it once more" in out
    assert not Path(f"/proc/{killed[0]}").exists()  # died with its worker
    rows = _rows(root)
    assert [r["generation"] for r in rows] == [0, 1, 2, 3]
    assert all(r["status"] in ("passed", "cut-slower") for r in rows), [dict(r) for r in rows]
    assert all(r["worker"].startswith("ray:") for r in rows)
    assert _overlap(rows[1:]), [(r["eval_started_at"], r["evaluated_at"]) for r in rows]
    assert "generation budget reached (3)" in out


def test_ray_asked_for_without_ray_is_a_one_line_usage_error(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    _project(pytester.path)
    result = pytester.runpytest_inprocess("-p", "avo_harness.plugin", "--avo-evolve",
                                          "--avo-ray", "auto", *FAST)
    assert result.ret == 4
    assert "--avo-ray: Ray is not installed (pip install -e '.[ray]')" in result.stderr.str()
    assert not (pytester.path / ".avo").exists()  # no run was started


def _paired(verdict: str, high: float | None, who: str | None = None) -> Any:
    from avo_harness.evolve.paired import Paired

    return Paired(verdict, f"{verdict} (test)", (1.0,), 1.0, 0.5, high, 0.0, 3,
                  failure={"who": who} if who else None)


@pytest.mark.parametrize(("result", "outcome", "reason"), [
    (_paired("tie", 1.2), "committed", None),
    (_paired("slower", 0.9), "passed", "paired: slower (test)"),
    (_paired("error", None, who="candidate"), "failed", "paired timing: error (test)"),
    (_paired("error", None, who="harness"), "committed", None),
])
def test_a_commit_waits_for_the_paired_timing_against_the_best(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch, result: Any,
        outcome: str, reason: str | None) -> None:
    _slow_evaluations(monkeypatch, 0.01)
    asked: list[tuple[str, str, int, str]] = []

    def compare(candidate: Path, best: Path, settings: EvalSettings, rounds: int,
                **kwargs: Any) -> Any:
        asked.append((candidate.stem, best.name, rounds, best.read_text()[:20]))
        return result

    monkeypatch.setattr(scheduler.paired, "compare", compare)
    evolution, out = _evolution(tmp_path, lineage, 1, workers=1)
    evolution.settings = replace(evolution.settings, paired_rounds=3)
    evolution.run()
    seed, proposal = lineage.records(evolution.run_id)
    assert asked == [("evo_r1_g001", "seed.py", 3, SEED[:20])]
    assert (proposal.outcome, proposal.reason) == (outcome, reason)
    (event,) = lineage.events(evolution.run_id, "paired")
    assert (event["record"], event["best"], event["verdict"]) == (proposal.id, seed.id,
                                                                   result.verdict)
    assert f"evo_r1_g001: {result.summary}" in out.getvalue()


def test_paired_rounds_are_off_in_the_interpreter_unless_asked_for(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_evaluations(monkeypatch, 0.01)
    monkeypatch.setattr(scheduler.paired, "compare", lambda *a, **k: pytest.fail("timed"))
    evolution, _ = _evolution(tmp_path, lineage, 2, workers=1)
    evolution.settings = replace(evolution.settings, paired_rounds=None)
    evolution.run()
    assert all(r.committed for r in lineage.records(evolution.run_id))


class _Thoughtful(_Numbered):
    """Takes a while per step, pays per call, and may run side by side with itself."""

    name = "thoughtful"
    concurrent_steps = True

    def __init__(self) -> None:
        super().__init__()
        self.active, self.peak, self.shares = 0, 0, []
        self.lock = threading.Lock()

    def propose(self, context: VariationContext) -> Proposal:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.shares.append(context.cost_left_usd)
        assert context.spend is not None
        context.spend(100, 10, 0.5)
        time.sleep(0.3)
        with self.lock:
            self.active -= 1
        return replace(super().propose(context), tokens_in=100, tokens_out=10, cost_usd=0.5)


def test_an_operator_whose_steps_may_overlap_gets_a_step_per_slot_and_a_budget_share(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_evaluations(monkeypatch, 0.05)
    evolution, out = _evolution(tmp_path, lineage, 5, workers=2)
    operator = _Thoughtful()
    evolution.operator = operator
    evolution._parallel = 2
    evolution.settings = replace(evolution.settings, cost_budget_usd=10.0)
    evolution.run()
    records = lineage.records(evolution.run_id)
    assert [r.generation for r in records] == list(range(6))  # no generation taken twice
    assert operator.peak == 2
    # Half of what the budget leaves, each (a step started later sees what others spent).
    assert operator.shares[0] == 5.0 and all(share <= 5.0 for share in operator.shares)
    assert operator.shares[-1] < 5.0
    # Each step's calls were recorded once: as made, and not again at its end.
    assert lineage.spent(evolution.run_id) == (500, 50, 2.5)
    assert "generation budget reached (5)" in out.getvalue()


class _Placed(_Thoughtful):
    """Notes where each step was placed, and whether a step in flight already was there."""

    name = "placed"

    def __init__(self) -> None:
        super().__init__()
        self.placements: list[Placement] = []
        self.here: list[Placement] = []
        self.shared: list[Placement] = []

    def propose(self, context: VariationContext) -> Proposal:
        with self.lock:
            self.placements.append(context.placement)
            if context.placement in self.here:
                self.shared.append(context.placement)
            self.here.append(context.placement)
        try:
            return super().propose(context)
        finally:
            with self.lock:
                self.here.remove(context.placement)


def test_each_step_times_on_a_slot_of_its_own_under_that_gpu_s_lock(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an agent's workbench times, it times holding the lock of the GPU the loop
    placed its step on: never beside an evaluation timed there, nor beside another step."""
    operator, slots = _placed_run(tmp_path, lineage, monkeypatch, generations=5, parallel=2)
    assert operator.peak == 2 and len(operator.placements) == 5
    assert set(operator.placements) == {s.placement for s in slots}
    assert all(p.gpu_lock is not None for p in operator.placements)
    assert operator.shared == []


def test_a_step_at_a_time_times_on_the_first_slot(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    operator, slots = _placed_run(tmp_path, lineage, monkeypatch, generations=2, parallel=1)
    assert operator.placements == [slots[0].placement] * 2


def _placed_run(tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch, *,
                generations: int, parallel: int) -> tuple[_Placed, list[scheduler.Slot]]:
    """A search over two GPU slots whose operator records the placement of each step."""
    _slow_evaluations(monkeypatch, 0.05)
    evolution, _ = _evolution(tmp_path, lineage, generations, workers=2)
    slots = scheduler.local_slots(True, 2, tmp_path / "locks", gpus=["0", "1"])
    evolution.executor = scheduler.LocalExecutor(slots)
    operator = _Placed()
    evolution.operator = operator
    evolution._parallel = parallel
    evolution.run()
    return operator, slots


def test_a_commit_is_refused_when_its_error_drifts_past_the_seeds(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    def report(rms: float) -> dict[str, Any]:
        return {"candidates": {"x.py": {"precision": {"configs": {"c": {
            "max": 4 * rms, "rms": rms, "elements": 1000}}}}}}

    rms = {"seed": 0.01, "evo_r1_g001": 0.05, "evo_r1_g002": 0.015}

    def evaluate(path: Path, settings: EvalSettings, **kwargs: Any) -> Evaluation:
        rate = 1.0 + int(path.stem[-1:] if path.stem[-1:].isdigit() else 0)
        return Evaluation(Fitness(True, None, {"c": rate}, rate), report(rms[path.stem]), 0.0)

    monkeypatch.setattr(scheduler, "evaluate", evaluate)
    evolution, _ = _evolution(tmp_path, lineage, 2, workers=1)
    evolution.settings = replace(evolution.settings, precision_drift=2.0)
    evolution.run()
    _, drifted, fine = lineage.records(evolution.run_id)
    assert (drifted.outcome, fine.outcome) == ("passed", "committed")
    assert drifted.reason.startswith("precision-regression:") and "0.05" in drifted.reason


def test_a_proposal_s_helper_modules_are_staged_beside_it_and_committed_with_it(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    from avo_harness.evolve.operators import Event

    seen: dict[str, set[str]] = {}

    def evaluate(path: Path, settings: EvalSettings, **kwargs: Any) -> Evaluation:
        seen[path.stem] = {p.name for p in path.parent.glob("_*.py")}
        rate = 2.0 if path.stem != "seed" else 1.0
        return Evaluation(Fitness(True, None, {"c": rate}, rate), None, 0.0)

    class _WithHelpers(_Numbered):
        def propose(self, context: VariationContext) -> Proposal:
            files = {"_tiles.py": "BLOCK = 64\n", "../escape.py": "x", "_x.sh": "y"}
            return replace(super().propose(context), events=(
                Event("helpers", "3 helper modules", {"files": files}),))

    monkeypatch.setattr(scheduler, "evaluate", evaluate)
    evolution, _ = _evolution(tmp_path, lineage, 1, workers=1)
    evolution.operator = _WithHelpers()
    evolution.run()
    assert seen["evo_r1_g001"] == {"_tiles.py"}
    folder = tmp_path / "candidates" / "rmsnorm"
    assert (folder / "_tiles.py").read_text() == "BLOCK = 64\n"
    assert not (tmp_path / "candidates" / "escape.py").exists()
    assert not list(tmp_path.rglob("_x.sh"))
    # A kill that lost the helper: the next run of the store writes it back.
    (folder / "_tiles.py").unlink()
    again, _ = _evolution(tmp_path, lineage, 0, workers=1)
    again.run()
    assert (folder / "_tiles.py").read_text() == "BLOCK = 64\n"


def test_ctrl_c_stops_the_run_without_waiting_for_a_step_and_keeps_its_spend(
        tmp_path: Path, lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_evaluations(monkeypatch, 0.01)

    class _Pondering(_Numbered):
        def propose(self, context: VariationContext) -> Proposal:
            assert context.spend is not None
            context.spend(1000, 100, 0.25)
            time.sleep(60)
            return super().propose(context)

    evolution, _ = _evolution(tmp_path, lineage, 3, workers=1)
    evolution.operator = _Pondering()
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        evolution.run()
    timer.join()
    assert time.monotonic() - started < 10
    assert lineage.spent(evolution.run_id) == (1000, 100, 0.25)
    assert [r.operator for r in lineage.records(evolution.run_id)] == ["seed"]


def test_a_ray_evaluation_ships_the_helpers_staged_beside_the_candidate(tmp_path: Path) -> None:
    from avo_harness.evolve.scheduler import helpers_beside

    (tmp_path / "cand.py").write_text("from _kern import f\n")
    (tmp_path / "_kern.py").write_text("def f(): pass\n")
    (tmp_path / "other.py").write_text("x = 1\n")
    outside = tmp_path.parent / "secret.txt"
    outside.write_text("not a helper")
    (tmp_path / "_link.py").symlink_to(outside)
    assert helpers_beside(tmp_path / "cand.py") == {"_kern.py": "def f(): pass\n"}
