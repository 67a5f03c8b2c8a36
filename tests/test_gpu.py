"""The sandbox over CUDA IPC: run on the device (``pytest tests/test_gpu.py``); skipped
without CUDA."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from avo_harness.judge.checker import ESCAPE_S, calibrate, check_case, check_timed
from avo_harness.judge.sandbox import Sandbox, SandboxSettings
from avo_harness.tasks import get_task

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

HONEST = '''
import torch
def attention(q, k, v, causal=False, sm_scale=None):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1).float(), v.repeat_interleave(g, 1).float()
    s = q.float() @ k.transpose(-1, -2) * (sm_scale or q.shape[-1] ** -0.5)
    if causal:
        nq, nk = q.shape[2], k.shape[2]
        i = torch.arange(nq, device=q.device)[:, None]
        j = torch.arange(nk, device=q.device)[None, :]
        s = s.masked_fill(j > i + nk - nq, float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return (p @ v).to(q.dtype)
'''
CASE = {"B": 1, "Hq": 4, "Hkv": 2, "Nq": 300, "Nk": 257, "D": 64, "dtype": "bfloat16",
        "causal": True, "sm_scale": None, "layout": "bnhd", "spread": 1.0, "seed": 7}


def _sandbox(tmp_path: Path, body: str) -> Sandbox:
    path = tmp_path / "candidate.py"
    path.write_text(body)
    return Sandbox(path, "attention", SandboxSettings(cuda=True, timeout_s=120,
                                                      memory_limit_bytes=0))


def test_honest_candidate_passes_over_ipc(tmp_path: Path) -> None:
    box = _sandbox(tmp_path, HONEST)
    try:
        verdict = check_case(get_task("attention"), box, CASE, "cuda")
        assert verdict.passed, verdict.message
        stand_in = Sandbox(None, "attention", box.settings)
        try:
            protocol_s = calibrate(get_task("attention"), stand_in, CASE, "cuda",
                                   random.Random(1))
        finally:
            stand_in.close()
        verdict, times = check_timed(get_task("attention"), box, CASE, "cuda", floor_s=0.0,
                                     rng=random.Random(0), protocol_s=protocol_s)
        assert verdict.passed, verdict.message
        assert len(times) >= 10 and all(t > 0 for t in times)
        # What the parent's clock adds to an honest round: the pipe, the output's copy.
        print(f"device median {sorted(times)[len(times) // 2] * 1e3:.3f} ms, parent clock "
              f"{verdict.wall_gap_s * 1e3:.3f} ms more (the stand-in's "
              f"{protocol_s * 1e3:.3f} ms), sandbox {box.confinement.label}")
        assert 0 < verdict.wall_gap_s < protocol_s + ESCAPE_S
    finally:
        box.close()


def test_input_mutation_is_seen_through_ipc(tmp_path: Path) -> None:
    box = _sandbox(tmp_path, HONEST + "\n_inner = attention\n"
                   "def attention(q, k, v, causal=False, sm_scale=None):\n"
                   "    out = _inner(q, k, v, causal, sm_scale)\n"
                   "    k.mul_(0.5)\n"
                   "    return out\n")
    try:
        verdict = check_case(get_task("attention"), box, CASE, "cuda")
        assert not verdict.passed and verdict.rule == "input-mutated"
    finally:
        box.close()


def test_library_attention_is_caught_on_cuda(tmp_path: Path) -> None:
    box = _sandbox(tmp_path, "import torch\n"
                   "def attention(q, k, v, causal=False, sm_scale=None):\n"
                   "    f = getattr(torch.nn.functional, 'scaled_dot_' + 'product_attention')\n"
                   "    return f(q, k, v, is_causal=causal, scale=sm_scale, enable_gqa=True)\n")
    try:
        verdict = check_case(get_task("attention"), box, CASE, "cuda")
        assert (verdict.passed, verdict.rule) == (False, "forbidden-call")
        assert "scaled_dot_product_attention" in verdict.message
    finally:
        box.close()


def test_a_triton_candidate_compiles_through_the_server_once_for_every_process(
        tmp_path: Path) -> None:
    from avo_harness.judge.compile_server import CompileServer

    corpus = Path(__file__).parent / "adversarial"  # a fragment, on the helpers it uses
    source = (corpus / "_base.py").read_text() + "\n\n" + \
        (corpus / "honest" / "plain_triton.py").read_text()
    server = CompileServer(tmp_path / "compile-cache")
    settings = SandboxSettings(cuda=True, timeout_s=300, memory_limit_bytes=0)
    served = []
    # The second, a copy staged elsewhere under another name (a new process, a new Triton
    # cache), finds the kernel compiled.
    for path in (tmp_path / "seed" / "candidate.py", tmp_path / "staged" / "mutation.py"):
        path.parent.mkdir()
        path.write_text(source)
        box = Sandbox(path, "attention", settings, compile_server=server)
        try:
            verdict = check_case(get_task("attention"), box, CASE, "cuda")
            assert verdict.passed, verdict.message
        finally:
            box.close()
        served.append(box.compiles)
    print(f"compile server: {dict(server.counts)}; per process: {served}")
    assert served[0]["compiles"] >= 1 and not served[0]["failures"], served
    assert served[1]["hits"] == sum(served[0].values()) and not served[1]["compiles"], served
