"""The compile server answers what Triton makes of an IR, keeps it for every candidate, and
takes nothing from a request but the IR, the target and plain options."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from avo_harness.judge import compile_server
from avo_harness.judge.compile_server import (MODULE_NAME, CompileServer, Refused, binary,
                                              kernel_name, portable, validated)
from sm90_kernel import compile_from, compile_here


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "here"))
    return compile_here()


def request_of(kernel: Any, **changes: Any) -> dict[str, Any]:
    return {"ext": "ttir", "ir": kernel.asm["ttir"], "target": ["cuda", 90, 32],
            "options": {"num_warps": 4}, **changes}


def test_a_compile_is_triton_s_own_and_is_kept_for_every_later_request(
        tmp_path: Path, kernel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = CompileServer(tmp_path / "cache", jobs=1)
    answer = server.compile(request_of(kernel))
    assert binary(answer, "cubin") == kernel.asm["cubin"]
    assert answer["asm"]["ptx"] == kernel.asm["ptx"] and answer["metadata"]["name"] == "_add"
    assert server.counts == Counter(compiles=1)

    def no_job(request: Any) -> dict[str, Any]:
        raise AssertionError("compiled again")

    monkeypatch.setattr(server, "_run", no_job)
    again = CompileServer(tmp_path / "cache", jobs=1)  # another session, the same store
    monkeypatch.setattr(again, "_run", no_job)
    assert again.compile(request_of(kernel)) == answer
    assert again.counts == Counter(hits=1)


def test_a_candidate_finds_the_kernels_of_another_in_another_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mutation staged elsewhere, its kernels in a helper or in its own module, finds
    what its parent compiled: the absolute paths in the IR's locations do not count."""
    server = CompileServer(tmp_path / "cache")
    for place in ("seed", "staged/mutation_1"):
        for name in ("_kernels.py", "module.py"):
            module = tmp_path / place / "module.py"
            # Triton's own cache is keyed by the source alone: one each, as for each child.
            monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "here" / place / name))
            kernel = compile_from(module.parent / name)
            answer = server.compile(request_of(kernel), module=str(module))
            assert "cubin" in answer["asm"], answer
            ptx_files = [line for line in answer["asm"]["ptx"].splitlines()
                         if line.lstrip().startswith(".file")]
            assert ptx_files and all(str(tmp_path) not in f for f in ptx_files), ptx_files
            wanted = MODULE_NAME if name == "module.py" else name
            assert all(wanted in f for f in ptx_files), ptx_files
    assert server.counts == Counter(compiles=2, hits=2)


def test_only_locations_in_the_candidate_s_folder_are_renamed() -> None:
    ir = ('#loc = loc("/runs/7/cand.py":3:1)\n#loc1 = loc("/runs/7/_k.py":9:4)\n'
          '#loc2 = loc("/site/triton/language/standard.py":40:0)\n#loc3 = loc("x"(#loc))\n'
          '#loc4 = loc("/runs/7/sub/_k.py":1:1)\n')
    assert portable(ir, "/runs/7/cand.py") == (
        f'#loc = loc("{MODULE_NAME}":3:1)\n#loc1 = loc("_k.py":9:4)\n'
        '#loc2 = loc("/site/triton/language/standard.py":40:0)\n#loc3 = loc("x"(#loc))\n'
        '#loc4 = loc("/runs/7/sub/_k.py":1:1)\n')
    assert portable(ir, None) == ir


def test_another_option_or_target_is_another_entry(tmp_path: Path, kernel: Any) -> None:
    server = CompileServer(tmp_path / "cache")
    keys = {server.key(request_of(kernel)), server.key(request_of(kernel, options={})),
            server.key(request_of(kernel, target=["cuda", 100, 32])),
            server.key(request_of(kernel, ir=kernel.asm["ttir"] + " "))}
    assert len(keys) == 4


@pytest.mark.parametrize("change", [
    {"ext": "ptx"},
    {"ext": "cubin"},
    {"ir": b"bytes"},
    {"target": ["hip", 90, 32]},
    {"target": ["cuda", "90", 32]},
    {"target": ["cuda", 90, 64]},
    # Options that name files or command lines are never taken from a request.
    {"options": {"extern_libs": {"libdevice": "/etc/shadow"}}},
    {"options": {"ir_override": "/etc/passwd.ptx"}},
    {"options": {"ptx_options": "--output-file /tmp/x"}},
    {"options": {"instrumentation_mode": "fpsan"}},
    {"options": {"num_warps": {"nested": 1}}},
    {"options": {"arch": "x" * 65}},
    {"extra": 1},
])
def test_a_request_the_client_would_not_send_is_refused(change: dict[str, Any]) -> None:
    request = {"ext": "ttir", "ir": "module {}", "target": ["cuda", 90, 32], "options": {}}
    with pytest.raises(Refused):
        validated({**request, **change})


def test_an_ir_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_server, "MAX_IR_BYTES", 10)
    with pytest.raises(Refused, match="16 MiB"):
        validated({"ext": "ttir", "ir": "x" * 11, "target": ["cuda", 90, 32], "options": {}})


def test_ir_that_does_not_compile_answers_one_line_and_is_not_kept(tmp_path: Path) -> None:
    server = CompileServer(tmp_path / "cache")
    answer = server.compile({"ext": "ttir", "ir": "module { this is not MLIR", "options": {},
                             "target": ["cuda", 90, 32]})
    assert set(answer) == {"error"} and "\n" not in answer["error"], answer
    assert server.counts == Counter(failures=1)
    assert not list((tmp_path / "cache").glob("*/*.json"))


def test_a_job_is_named_by_its_kernel_s_function_and_launch_options() -> None:
    ir = 'module {\n  tt.func public @_attn_fwd(%arg0: !tt.ptr<f16>) {\n'
    request = {"ext": "ttgir", "ir": ir, "target": ["cuda", 90, 32],
               "options": {"num_warps": 8, "num_stages": 3}}
    assert kernel_name(request) == "_attn_fwd w8 s3"
    assert kernel_name({**request, "ir": "module {}"}) == "? w8 s3"


def test_a_damaged_entry_is_compiled_again(tmp_path: Path, kernel: Any) -> None:
    server = CompileServer(tmp_path / "cache")
    request = request_of(kernel)
    server.compile(request)
    (entry,) = (tmp_path / "cache").glob("*/*.json")
    entry.write_text(json.dumps({"asm": {"ptx": "not a cubin"}, "metadata": {}}))
    assert binary(server.compile(request), "cubin") == kernel.asm["cubin"]
    assert server.counts == Counter(compiles=2)


def test_identical_requests_in_flight_wait_for_one_compile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = CompileServer(tmp_path / "cache", jobs=4)
    runs: list[float] = []

    def slow(request: Any) -> dict[str, Any]:
        runs.append(time.monotonic())
        time.sleep(0.5)
        return {"asm": {"cubin": "AAAA"}, "metadata": {"name": "k"}}

    monkeypatch.setattr(server, "_run", slow)
    request = {"ext": "ttir", "ir": "module {}", "target": ["cuda", 90, 32], "options": {}}
    answers: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(server.compile(request)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == 1 and len(answers) == 3 and all(a == answers[0] for a in answers)
    assert server.counts["compiles"] == 1 and server.counts["waited"] == 2


def test_a_compile_past_its_time_is_killed(tmp_path: Path, kernel: Any) -> None:
    server = CompileServer(tmp_path / "cache", timeout_s=0.2)  # less than Triton's import
    answer = server.compile(request_of(kernel))
    assert answer == {"error": "the compile took over 0.2 s"}
    assert server.counts == Counter(failures=1)


def test_a_job_gets_none_of_the_parent_s_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    env = compile_server._job_environment("/scratch")
    assert "ANTHROPIC_API_KEY" not in env and "CUDA_VISIBLE_DEVICES" not in env
    assert env["TMPDIR"] == env["HOME"] == "/scratch"


def test_serve_answers_a_child_until_it_hangs_up(tmp_path: Path, kernel: Any) -> None:
    server = CompileServer(tmp_path / "cache")
    ours, theirs = socket.socketpair()
    counts: Counter[str] = Counter()
    jobs: list[compile_server.Job] = []
    thread = threading.Thread(target=server.serve,
                              args=(Connection(ours.detach()), counts, None, jobs))
    thread.start()
    child = Connection(theirs.detach())
    for message in (b"not json", json.dumps({"ext": "ttir"}).encode(),
                    json.dumps(request_of(kernel)).encode()):
        child.send_bytes(message)
    answers = [json.loads(child.recv_bytes()) for _ in range(3)]
    child.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [a.get("error", "")[:8] for a in answers] == ["refused:", "refused:", ""]
    assert binary(answers[2], "cubin") == kernel.asm["cubin"]
    assert counts == Counter(refused=2, compiles=1)
    assert [job.kernel for job in jobs] == ["_add w4 s?"] and jobs[0].seconds > 0
