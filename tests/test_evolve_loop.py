"""The evolution loop end to end, in real subprocesses: commits, budgets, kill -9 and resume,
and candidates that crash, hang or exhaust memory."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avo_harness.evolve.lineage import Lineage, source_hash

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


def test_evolve_commits_and_the_committed_candidates_pass(tmp_path: Path) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    result = _pytest(root, "--avo-evolve", "--avo-generations", "2", *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(root)
    assert [r["operator"] for r in rows] == ["seed", "builtin", "builtin"]
    assert all(r["status"] == "passed" for r in rows), [dict(r) for r in rows]
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
    assert all(r["status"] in ("passed", "failed") for r in rows)
    assert rows[-1]["run_id"] == before[0]["run_id"]
    # The interrupted candidate kept its row and its source; nothing was proposed twice.
    assert rows[len(before) - 1]["source_hash"] == before[-1]["source_hash"]
    assert len({r["source_hash"] for r in rows}) == len(rows)
    for row in rows:
        if row["committed"]:
            path = root / "candidates" / "attention" / f"{row['name']}.py"
            assert source_hash(path.read_text()) == row["source_hash"]


def test_resume_restores_a_committed_file_that_went_missing(tmp_path: Path) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    assert _pytest(root, "--avo-evolve", "--avo-generations", "1", *FAST).returncode == 0
    seed_row = _rows(root)[0]
    (root / "candidates" / "attention" / "seed.py").unlink()
    result = _pytest(root, "--avo-resume", "--avo-generations", "1", *FAST)  # implies evolve
    assert result.returncode == 0, result.stdout
    restored = root / "candidates" / "attention" / "seed.py"
    assert source_hash(restored.read_text()) == seed_row["source_hash"]


CRASH = "import os\n" + CHUNKED.replace('    chunk = TUNABLES["CHUNK"]["value"]',
                                         '    os.abort()')
HANG = "import time\n" + CHUNKED.replace('    chunk = TUNABLES["CHUNK"]["value"]',
                                         '    time.sleep(3600)')
HOG = CHUNKED.replace('    chunk = TUNABLES["CHUNK"]["value"]',
                      '    hog = torch.ones(8 * 2**30, dtype=torch.uint8)')


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


def test_an_evaluation_that_outlives_its_budget_is_killed_and_recorded(tmp_path: Path) -> None:
    root = _project(tmp_path, hang=HANG)
    result = _pytest(root, "--avo-evolve", "--avo-generations", "0", "--avo-eval-timeout", "8",
                     *FAST)
    assert result.returncode == 0, result.stdout
    (row,) = _rows(root)
    assert row["status"] == "failed" and "evaluation timed out after 8 s" in row["reason"]


@pytest.mark.parametrize("args, message", [
    (["--avo-generations", "-1"], "--avo-generations: expected an integer >= 0"),
    (["--avo-time-budget", "soon"], "--avo-time-budget: expected a duration"),
    (["--avo-operator", "nope"], "--avo-operator nope: unknown operator; available: anthropic, builtin"),
    (["--avo-task", "matmul"], "--avo-task: expected one of"),
    (["--avo-margin", "1.5"], "--avo-margin: expected a fraction"),
    (["--avo-resume"], "--avo-resume: no run of task 'attention'"),
])
def test_bad_evolve_options_fail_in_one_line(tmp_path: Path, args: list[str],
                                             message: str) -> None:
    root = _project(tmp_path, seed=CHUNKED)
    result = _pytest(root, "--avo-evolve", *args, *FAST)
    assert result.returncode == 4
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], result.stderr


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
