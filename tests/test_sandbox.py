"""The sandbox's process protocol on its own: what crosses back, and how each fault is named."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from avo_harness.judge.sandbox import CandidateFault, Sandbox, SandboxSettings
from avo_harness.tasks import Call, get_task
from avo_harness.judge.timer import Rounds

TASK = get_task("attention")
CASE = {"B": 1, "Hq": 2, "Hkv": 1, "Nq": 9, "Nk": 13, "D": 32, "dtype": "float16",
        "causal": True, "sm_scale": None, "layout": "bnhd", "spread": 1.0, "seed": 3}
SETTINGS = SandboxSettings(cuda=False, timeout_s=120, memory_limit_bytes=0)

# One candidate whose ``mode`` keyword picks what it does.
PROBE = '''
import os
import resource
import sys
import time

import torch


def attention(q, k, v, causal=False, sm_scale=None, mode="double"):
    if mode == "double":
        return q * 2
    if mode == "pid":
        return torch.tensor([os.getpid()])
    if mode == "mutate":
        k.mul_(2)
        return q.clone()
    if mode == "raise":
        raise ValueError(f"no kernel for shape {tuple(q.shape)}")
    if mode == "sys-exit":
        sys.exit(3)
    if mode == "abort":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the project
        os.abort()
    if mode == "os-exit":
        os._exit(3)
    if mode == "hang":
        with open(__file__ + ".pid", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    if mode == "list":
        return [q.clone()]
    if mode == "parameter":
        return torch.nn.Parameter(q.clone())
    if mode == "view":
        return v.transpose(-1, -2)
    if mode == "sparse":
        return q.float().to_sparse()
    raise AssertionError(mode)
'''


def _inputs(mode: str) -> Call:
    call = TASK.make_inputs(CASE, "cpu")
    return Call(call.args, {**call.kwargs, "mode": mode})


def _pid(box: Sandbox) -> int:
    out, _ = box.call(_inputs("pid"))
    return int(out[0])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _write(folder: Path, source: str) -> Path:
    path = folder / "candidate.py"
    path.write_text(source)
    return path


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(_write(tmp_path_factory.mktemp("sandbox"), PROBE), "attention", SETTINGS)
    yield box
    box.close()


def test_the_parent_sees_exactly_the_output_and_a_copy_taken_at_return(probe: Sandbox) -> None:
    call = _inputs("double")
    out, early = probe.call(call)
    expected = call.args[0] * 2
    assert type(out) is torch.Tensor and type(early) is torch.Tensor
    assert (out.dtype, out.shape, out.stride()) == (expected.dtype, expected.shape,
                                                     expected.stride())
    assert torch.equal(out, expected) and torch.equal(early, expected)
    assert early.untyped_storage().data_ptr() != out.untyped_storage().data_ptr()


def test_the_parent_sees_what_the_candidate_wrote_to_its_inputs(probe: Sandbox) -> None:
    call = _inputs("mutate")
    k = call.args[1].clone()
    probe.call(call)
    assert torch.equal(call.args[1], k * 2)


def test_start_is_idempotent(probe: Sandbox) -> None:
    probe.start()
    pid = _pid(probe)
    probe.start()
    assert _pid(probe) == pid


@pytest.mark.parametrize("mode, kind", [("raise", "ValueError"), ("sys-exit", "SystemExit")])
def test_an_exception_is_raised_and_the_process_serves_on(probe: Sandbox, mode: str,
                                                          kind: str) -> None:
    pid = _pid(probe)
    with pytest.raises(CandidateFault) as caught:
        probe.call(_inputs(mode))
    assert caught.value.kind == "raised"
    assert f"the candidate raised {kind}" in str(caught.value)
    assert f'File "{probe.path}"' in caught.value.traceback
    if mode == "raise":
        assert "no kernel for shape (1, 2, 9, 32)" in str(caught.value)
    assert _pid(probe) == pid


@pytest.mark.parametrize("mode, why", [("abort", "killed by SIGABRT"),
                                       ("os-exit", "exited with status 3")])
def test_a_crash_is_a_fault_and_the_next_call_gets_a_fresh_process(probe: Sandbox, mode: str,
                                                                   why: str) -> None:
    pid = _pid(probe)
    with pytest.raises(CandidateFault) as caught:
        probe.call(_inputs(mode))
    assert caught.value.kind == "crash"
    assert why in str(caught.value) and "'call'" in str(caught.value)
    assert _gone(pid)
    assert _pid(probe) != pid


@pytest.mark.parametrize("mode, described", [("list", "builtins.list"),
                                             ("parameter", "torch.nn.parameter.Parameter")])
def test_what_is_not_a_plain_tensor_is_described_not_sent(probe: Sandbox, mode: str,
                                                          described: str) -> None:
    out, early = probe.call(_inputs(mode))
    assert out == {"not_a_tensor": described}
    assert early is None


def test_a_view_of_an_input_is_refused_and_the_process_is_not_reused(probe: Sandbox) -> None:
    pid = _pid(probe)
    with pytest.raises(CandidateFault) as caught:
        probe.call(_inputs("view"))
    assert caught.value.kind == "output-aliases-input"
    assert "input 2" in str(caught.value)
    assert _gone(pid)
    assert _pid(probe) != pid


def test_a_sparse_output_is_described_by_its_layout(probe: Sandbox) -> None:
    out, early = probe.call(_inputs("sparse"))
    assert out == {"layout": "torch.sparse_coo"}


def test_timed_rounds_send_back_their_kept_outputs(probe: Sandbox) -> None:
    sets = [TASK.make_inputs({**CASE, "seed": seed}, "cpu").args for seed in (1, 2)]
    schedule = [(i % 2, 2.0 if i % 3 else 1.0) for i in range(14)]
    rounds = Rounds(sets, {"causal": True, "sm_scale": None, "mode": "double"}, schedule,
                    TASK.linear_arg, frozenset({0, 2}))
    times, host_times, kept, executed = probe.time(rounds)
    # The interpreter's plan: one warm-up round, then three timed rounds.
    assert (len(times), len(host_times), executed) == (3, 3, 4)
    assert set(kept) == {0, 2, 3}
    for index, out in kept.items():
        assert torch.equal(out, sets[schedule[index][0]][0] * 2)


@pytest.mark.parametrize("source, line, words", [
    ("import torch\n\nraise RuntimeError('needs a GPU')\n", 3,
     "raised RuntimeError: needs a GPU"),
    ("import torch\n\ndef attention(q, k, v:\n    pass\n", 3, "raised SyntaxError"),
    ("import torch\n\n\ndef rmsnorm(x, weight):\n    return x\n", None,
     "defines no function 'attention'"),
], ids=["raises", "syntax-error", "no-entry"])
def test_an_import_failure_is_an_import_fault_with_the_candidate_traceback(
        tmp_path: Path, source: str, line: int | None, words: str) -> None:
    box = Sandbox(_write(tmp_path, source), "attention", SETTINGS)
    try:
        with pytest.raises(CandidateFault) as caught:
            box.start()
    finally:
        box.close()
    assert caught.value.kind == "import"
    assert words in str(caught.value)
    if line is not None:
        assert f'File "{box.path}", line {line}' in caught.value.traceback


def test_a_call_imports_first_and_reports_an_import_failure(tmp_path: Path) -> None:
    box = Sandbox(_write(tmp_path, "raise ImportError('no triton')\n"), "attention", SETTINGS)
    try:
        with pytest.raises(CandidateFault) as caught:
            box.call(_inputs("double"))
    finally:
        box.close()
    assert caught.value.kind == "import" and "no triton" in str(caught.value)


def test_a_call_past_the_time_limit_is_a_timeout_and_the_process_is_killed(
        tmp_path: Path) -> None:
    path = _write(tmp_path, PROBE)
    box = Sandbox(path, "attention", SETTINGS)
    try:
        box.start()
        # Only the call is held to the short limit, not the import.
        box.settings = replace(SETTINGS, timeout_s=1.0)
        with pytest.raises(CandidateFault) as caught:
            box.call(_inputs("hang"))
    finally:
        box.close()
    assert caught.value.kind == "timeout"
    assert "within 1 s" in str(caught.value)
    assert _gone(int(Path(f"{path}.pid").read_text()))


def test_close_is_safe_twice_and_ends_the_process(tmp_path: Path) -> None:
    box = Sandbox(_write(tmp_path, PROBE), "attention", SETTINGS)
    box.close()  # never started
    pid = _pid(box)
    box.close()
    box.close()
    assert _gone(pid)
