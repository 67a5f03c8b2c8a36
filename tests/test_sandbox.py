"""The sandbox's process protocol on its own: what crosses back, and how each fault is named."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from avo_harness.judge.sandbox import (CandidateFault, HarnessFault, Profiler, Sandbox,
                                       SandboxSettings)
from avo_harness.tasks import Call, get_task

TASK = get_task("attention")
CASE = {"B": 1, "Hq": 2, "Hkv": 1, "Nq": 9, "Nk": 13, "D": 32, "dtype": "float16",
        "causal": True, "sm_scale": None, "layout": "bnhd", "spread": 1.0, "seed": 3}
SETTINGS = SandboxSettings(cuda=False, timeout_s=120, memory_limit_bytes=0)

# One candidate whose ``mode`` keyword picks what it does.
PROBE = '''
import os
import sys
import resource
import sys
import time

import torch


def attention(q, k, v, causal=False, sm_scale=None, mode="double"):
    if mode == "double":
        return q * 2
    if mode == "env":
        return q * (3 if "AVO_TEST_SECRET" in os.environ else 2)
    if mode == "inductor":  # torch.compile's kernels compile here, with no worker pool
        import torch._inductor.config as inductor
        return q * (3 if inductor.compile_threads == 1 else 2)
    if mode == "forge":
        # Write a fake answer straight into the socket: a claim the parent must not believe.
        import json, struct
        fd = json.loads(sys.argv[1])["socket"]
        body = json.dumps({"status": "violated", "rule": "harness-error", "message": "x"})
        os.write(fd, struct.pack("!i", len(body)) + body.encode())
        time.sleep(600)
    if mode == "late":
        # Every argument lives in the arena: a thread can reach the output slot there.
        import threading
        arena = torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage())
        threading.Timer(0.1, arena.zero_).start()
        return q * 2
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
        time.sleep(600)
    if mode == "idle-exit":  # ends its own process once no call has come for 50 ms
        import faulthandler
        faulthandler.dump_traceback_later(0.05, exit=True, file=open(os.devnull, "w"))
        return q * 2
    if mode == "shadow":  # a package named as the harness's, where the child starts
        os.makedirs(os.path.join(os.getcwd(), "avo_harness"), exist_ok=True)
        with open(os.path.join(os.getcwd(), "avo_harness", "__init__.py"), "w") as f:
            f.write("raise SystemExit(7)\\n")
        os._exit(3)
    if mode == "tmp":  # bwrap's /tmp is private and writable
        with open(f"/tmp/avo-probe-{os.getpid()}", "w") as f:
            f.write("x")
        return q * 2
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


def _call(box: Sandbox, mode: str):  # -> (Binding, Returned)
    call = _inputs(mode)
    return box.call(call, *TASK.output_like(call))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return os.waitpid(pid, os.WNOHANG)[0] == pid if False else _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def _write(folder: Path, source: str) -> Path:
    path = folder / "candidate.py"
    path.write_text(source)
    return path


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(_write(tmp_path_factory.mktemp("sandbox"), PROBE), "attention", SETTINGS)
    yield box
    box.close()


def test_the_parent_gets_its_own_copy_of_exactly_the_output(probe: Sandbox) -> None:
    call = _inputs("double")
    binding, returned = probe.call(call, *TASK.output_like(call))
    expected = call.args[0] * 2
    assert type(returned.out) is torch.Tensor and returned.described is None
    assert (returned.out.dtype, returned.out.shape) == (expected.dtype, expected.shape)
    assert torch.equal(returned.out, expected) and torch.equal(binding.out, expected)
    assert returned.out.data_ptr() != binding.out.data_ptr()
    assert returned.wall_s > 0 and returned.device_s is None  # no device clock on a CPU


def test_the_inputs_keep_their_strides_in_the_arena_and_the_parent_sees_writes(
        probe: Sandbox) -> None:
    call = _inputs("mutate")
    binding, _ = probe.call(call, *TASK.output_like(call))
    assert [a.stride() for a in binding.args] == [a.stride() for a in call.args]
    assert torch.equal(binding.args[1], call.args[1] * 2)
    assert torch.equal(call.args[1], TASK.make_inputs(CASE, "cpu").args[1])  # its own copy


def test_start_is_idempotent(probe: Sandbox) -> None:
    probe.start()
    pid = probe.pid
    probe.start()
    _call(probe, "double")
    assert probe.pid == pid


@pytest.mark.parametrize("mode, kind", [("raise", "ValueError"), ("sys-exit", "SystemExit")])
def test_an_exception_is_raised_and_the_process_serves_on(probe: Sandbox, mode: str,
                                                          kind: str) -> None:
    probe.start()
    pid = probe.pid
    with pytest.raises(CandidateFault) as caught:
        _call(probe, mode)
    assert caught.value.kind == "raised"
    assert f"the candidate raised {kind}" in str(caught.value)
    assert f'File "{probe.path}"' in caught.value.traceback
    if mode == "raise":
        assert "no kernel for shape (1, 2, 9, 32)" in str(caught.value)
    _call(probe, "double")
    assert probe.pid == pid


@pytest.mark.parametrize("mode, why", [("abort", "killed by SIGABRT"),
                                       ("os-exit", "exited with status 3")])
def test_a_crash_is_a_fault_and_the_next_call_gets_a_fresh_process(probe: Sandbox, mode: str,
                                                                   why: str) -> None:
    probe.start()
    pid = probe.pid
    with pytest.raises(CandidateFault) as caught:
        _call(probe, mode)
    assert caught.value.kind == "crash"
    assert why in str(caught.value) and "'call'" in str(caught.value)
    assert _gone(pid)
    _call(probe, "double")
    assert probe.pid != pid


def test_a_process_that_ends_between_calls_is_a_crash(probe: Sandbox) -> None:
    _call(probe, "idle-exit")
    time.sleep(0.5)
    with pytest.raises(CandidateFault) as caught:
        _call(probe, "double")
    assert caught.value.kind == "crash" and "the wait for its next call" in str(caught.value)
    _call(probe, "double")  # then a fresh process


def test_a_package_left_in_the_scratch_folder_does_not_shadow_the_harness(
        probe: Sandbox) -> None:
    with pytest.raises(CandidateFault) as caught:
        _call(probe, "shadow")
    assert caught.value.kind == "crash", caught.value
    assert (probe.scratch / "avo_harness" / "__init__.py").exists()
    binding, returned = _call(probe, "double")  # the next child starts, on the real harness
    assert torch.equal(returned.out, binding.args[0] * 2)


def test_a_child_under_bubblewrap_writes_its_private_tmp(probe: Sandbox) -> None:
    if not probe.confinement.bwrap:
        pytest.skip(f"needs bubblewrap: {probe.confinement.reason}")
    before = set(Path("/tmp").glob("avo-probe-*"))
    binding, returned = _call(probe, "tmp")
    assert torch.equal(returned.out, binding.args[0] * 2)
    assert set(Path("/tmp").glob("avo-probe-*")) == before  # the host's /tmp is untouched


def test_a_child_that_cannot_start_again_is_the_candidate_s_fault(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = Sandbox(_write(tmp_path, PROBE), "attention", SETTINGS)
    try:
        with pytest.raises(CandidateFault):
            _call(box, "os-exit")
        # What a candidate could leave behind to stop its next start (a package of the
        # harness's name in its folder, before -P) is stood in for by one on PYTHONPATH.
        (tmp_path / "shadow" / "avo_harness").mkdir(parents=True)
        (tmp_path / "shadow" / "avo_harness" / "__init__.py").write_text("raise SystemExit(7)\n")
        broken = {**box._environment(), "PYTHONPATH": str(tmp_path / "shadow")}
        monkeypatch.setattr(box, "_environment", lambda: broken)
        with pytest.raises(CandidateFault) as caught:
            _call(box, "double")
        assert caught.value.kind == "crash" and "after an earlier start did" in str(caught.value)
    finally:
        box.close()


@pytest.mark.parametrize("mode, described", [("list", {"type": "builtins.list"}),
                                             ("parameter",
                                              {"type": "torch.nn.parameter.Parameter"}),
                                             ("sparse", {"layout": "torch.sparse_coo"})])
def test_what_does_not_fit_the_output_slot_is_described_not_sent(
        probe: Sandbox, mode: str, described: dict[str, str]) -> None:
    _, returned = _call(probe, mode)
    assert returned.out is None and returned.described == described


def test_a_view_of_an_input_is_refused_and_the_process_is_not_reused(probe: Sandbox) -> None:
    probe.start()
    pid = probe.pid
    with pytest.raises(CandidateFault) as caught:
        _call(probe, "view")
    assert caught.value.kind == "output-aliases-input"
    assert _gone(pid)


def test_torch_compile_in_the_child_starts_no_worker_pool(probe: Sandbox) -> None:
    call = _inputs("inductor")
    _, returned = probe.call(call, *TASK.output_like(call))
    assert torch.equal(returned.out, call.args[0] * 3)


def test_the_child_gets_none_of_the_parent_s_environment(
        probe: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVO_TEST_SECRET", "sk-not-yours")
    probe.close()
    call = _inputs("env")
    _, returned = probe.call(call, *TASK.output_like(call))
    assert torch.equal(returned.out, call.args[0] * 2)


def test_a_claim_the_child_may_not_make_is_a_protocol_fault(probe: Sandbox) -> None:
    with pytest.raises(CandidateFault) as caught:
        _call(probe, "forge")
    assert caught.value.kind == "protocol" and "harness-error" in str(caught.value)


def test_the_parent_s_copy_is_taken_at_the_answer_and_a_late_write_shows_in_the_slot(
        probe: Sandbox) -> None:
    call = _inputs("late")
    binding, returned = probe.call(call, *TASK.output_like(call))
    time.sleep(0.5)
    assert torch.equal(returned.out, call.args[0] * 2)
    assert not binding.out.any()  # what the checker compares with its copy (deferred-write)


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
            _call(box, "double")
    finally:
        box.close()
    assert caught.value.kind == "import" and "no triton" in str(caught.value)


def test_a_call_past_the_time_limit_is_a_timeout_and_the_process_is_killed(
        tmp_path: Path) -> None:
    path = _write(tmp_path, PROBE)
    box = Sandbox(path, "attention", SETTINGS)
    try:
        box.start()
        pid = box.pid
        # Only the call is held to the short limit, not the import.
        box.settings = replace(SETTINGS, timeout_s=1.0)
        with pytest.raises(CandidateFault) as caught:
            _call(box, "hang")
    finally:
        box.close()
    assert caught.value.kind == "timeout"
    assert "within 1 s" in str(caught.value)
    assert box.pid is None and _gone(pid)  # killed, with its namespace


def test_close_is_safe_twice_and_ends_the_process(tmp_path: Path) -> None:
    box = Sandbox(_write(tmp_path, PROBE), "attention", SETTINGS)
    box.close()  # never started
    box.start()
    pid = box.pid
    box.close()
    box.close()
    assert _gone(pid)


#: A profiler's stand-in: it starts the child (keeping the descriptors the sandbox passed),
#: outlives it, and then writes its report, as Nsight Compute does.
PROFILER = """
import subprocess, sys
code = subprocess.run(sys.argv[2:], close_fds=False).returncode
open(sys.argv[1] + "/report.txt", "w").write(f"child exited {code}")
"""


def test_a_profiler_starts_the_child_inside_the_sandbox_and_its_report_is_kept(
        tmp_path: Path) -> None:
    from avo_harness.judge import confine
    if confine.detect().bwrap is None:
        pytest.skip(f"needs bubblewrap: {confine.detect().reason}")
    reports = tmp_path / "reports"
    reports.mkdir()
    profiler = Profiler((sys.executable, "-c", PROFILER, str(reports)),
                        (49152,), reports)
    box = Sandbox(_write(tmp_path, PROBE), "attention", SETTINGS, profiler=profiler)
    try:
        _, returned = _call(box, "double")
        assert torch.equal(returned.out, _inputs("double").args[0] * 2)
        assert not (reports / "report.txt").exists()  # the profiler waits for its child
    finally:
        box.close()
    assert (reports / "report.txt").read_text() == "child exited 0"


def test_a_profiled_child_needs_bubblewrap(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    from avo_harness.judge import confine
    monkeypatch.setenv("AVO_SANDBOX", "off")
    confine.detect.cache_clear()
    try:
        box = Sandbox(_write(tmp_path, PROBE), "attention", SETTINGS,
                      profiler=Profiler(("true",), (49152,), tmp_path))
        with pytest.raises(HarnessFault, match="needs bubblewrap"):
            box.start()
        box.close()
    finally:
        confine.detect.cache_clear()
