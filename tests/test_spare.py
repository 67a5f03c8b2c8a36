"""The spare evaluation process: started ahead, imports done, handed its pytest arguments."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from avo_harness.evolve import evaluate as evaluate_module
from avo_harness.evolve.evaluate import EvalSettings, Placement, evaluate

ROOT = Path(__file__).resolve().parent.parent
CANDIDATE = '''
import torch


def attention(q, k, v, causal=False, sm_scale=None):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1).double(), v.repeat_interleave(g, 1).double()
    nq, nk = q.shape[2], k.shape[2]
    s = q.double() @ k.transpose(-1, -2) * (sm_scale if sm_scale is not None
                                              else q.shape[-1] ** -0.5)
    if causal:
        i = torch.arange(nq)[:, None]
        s = s.masked_fill(torch.arange(nk)[None, :] > i + nk - nq, float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
'''


def _spare(*line: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "avo_harness.evolve.spare", "cpu"],
                          input=b"".join(line), capture_output=True, cwd=ROOT, timeout=120)


def test_a_spare_with_nothing_to_do_exits_quietly() -> None:
    done = _spare()
    assert done.returncode == 0 and done.stdout == b""


def test_a_spare_refuses_what_is_not_a_command_line() -> None:
    done = _spare(b'{"argv": "rm -rf /"}\n')
    assert done.returncode == 4 and b"not a list of strings" in done.stderr


def test_a_spare_runs_pytest_on_the_arguments_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("import sys\n\ndef test_argv():\n"
                                          "    assert sys.argv[0] == 'pytest'\n")
    done = _spare(f'["-q", "-p", "no:cacheprovider", "{tmp_path / "test_one.py"}"]\n'.encode())
    assert done.returncode == 0, done.stdout.decode()[-2000:]
    assert b"1 passed" in done.stdout


def _settings(root: Path) -> EvalSettings:
    return EvalSettings("cpu", 2, 60.0, 300.0, 8.0, root, spare=True)


def _project(tmp_path: Path) -> Path:
    folder = tmp_path / "candidates" / "attention"
    folder.mkdir(parents=True)
    (folder / "plain.py").write_text(CANDIDATE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return folder / "plain.py"


def _waiting(settings: EvalSettings) -> list[evaluate_module.Spare]:
    return evaluate_module._SPARES.get(evaluate_module._spare_key(settings, Placement()), [])


@pytest.mark.slow
def test_the_next_evaluation_runs_in_the_spare_the_last_one_started(tmp_path: Path) -> None:
    path = _project(tmp_path)
    settings = _settings(tmp_path)
    try:
        first = evaluate(path, settings)
        assert first.fitness.passed, first.fitness.reason
        (spare,) = _waiting(settings)
        folder = Path(spare.folder.name)
        assert spare.proc.poll() is None and folder.is_dir()  # imported, waiting
        second = evaluate(path, settings)
        assert second.fitness.passed, second.fitness.reason
        assert spare.proc.returncode == 0  # it ran the evaluation, in its folder
        assert not folder.exists()
        assert set(second.report["candidates"]) == set(first.report["candidates"])
        (following,) = _waiting(settings)
        assert following is not spare
    finally:
        evaluate_module.close_spares()
    assert following.proc.returncode is not None and not Path(following.folder.name).exists()


def _fresh_starts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines of the evaluation processes started fresh (not spares)."""
    started: list[list[str]] = []
    real = evaluate_module.start

    def start(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        if "avo_harness.evolve.spare" not in argv:
            started.append(argv)
        return real(argv, **kwargs)

    monkeypatch.setattr(evaluate_module, "start", start)
    return started


@pytest.mark.slow
def test_a_spare_that_died_is_replaced_by_a_fresh_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _project(tmp_path)
    settings = _settings(tmp_path)
    started = _fresh_starts(monkeypatch)
    try:
        evaluate_module._start_spare(settings, Placement())
        (spare,) = _waiting(settings)
        os.killpg(spare.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while spare.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        evaluation = evaluate(path, settings)
        assert evaluation.fitness.passed, evaluation.fitness.reason
        assert len(started) == 1 and started[0][1:3] == ["-m", "pytest"]
        assert not Path(spare.folder.name).exists()
    finally:
        evaluate_module.close_spares()


@pytest.mark.slow
def test_a_spare_is_handed_on_only_by_the_thread_that_started_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process dies with the thread that started it: a spare of a thread that ended (an
    agent's step) must not run another thread's evaluation."""
    path = _project(tmp_path)
    settings = _settings(tmp_path)
    started = _fresh_starts(monkeypatch)
    try:
        thread = threading.Thread(target=evaluate_module._start_spare,
                                  args=(settings, Placement()))
        thread.start()
        thread.join()
        assert not _waiting(settings)  # this thread's: none
        evaluation = evaluate(path, settings)
        assert evaluation.fitness.passed, evaluation.fitness.reason
        assert len(started) == 1  # a fresh process, not the other thread's spare
    finally:
        evaluate_module.close_spares()
