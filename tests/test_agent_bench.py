"""The workbench's own parts: what Triton compiled, read from a real cache (compiled here
for a Hopper target, no GPU needed), a hostile cache, Nsight Compute's CSV, the error map,
and the kernels a profile asks for."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from avo_harness.agent import workbench
from avo_harness.agent.bench import Bench, error_map_text, jit_names, ncu_rows, profile_text
from avo_harness.agent.workbench import kernels_in
from avo_harness.evolve.evaluate import EvalSettings
from avo_harness.tasks import get_task


_COMPILE = """
import os, sys
os.environ["TRITON_CACHE_DIR"] = sys.argv[1]
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


@triton.jit
def scaled_sum(x, y, o, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    a = tl.load(x + i, mask=i < n)
    b = tl.load(y + i, mask=i < n)
    tl.store(o + i, a * b + tl.sum(a, 0) * b, mask=i < n)


signature = {"x": "*fp32", "y": "*fp32", "o": "*fp32", "n": "i32", "BLOCK": "constexpr"}
for options in ({"num_warps": 4}, {"num_warps": 1, "maxnreg": 32}):
    triton.compile(ASTSource(scaled_sum, signature, {"BLOCK": 2048}),
                   target=GPUTarget("cuda", 90, 32), options=options)
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Triton cache holding one kernel compiled twice for sm90: as Triton picks, and held
    to 32 registers (so that it spills)."""
    folder = tmp_path_factory.mktemp("triton")
    # In a process of its own: where this session runs candidates in Triton's interpreter
    # (TRITON_INTERPRET=1 is set before triton is imported), nothing compiles for real.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = tmp_path_factory.mktemp("compile") / "compile.py"  # triton.jit reads the source
    script.write_text(_COMPILE)
    subprocess.run([sys.executable, str(script), str(folder)], env=env, check=True,
                   timeout=300)
    return folder


def test_compile_facts_come_from_triton_s_cache_and_the_cubin(cache: Path) -> None:
    free, capped = sorted(kernels_in(cache, ["ptx", "sass", "ttgir"], 200),
                          key=lambda k: k["maxnreg"] or 0)
    for kernel in (free, capped):
        assert kernel["name"] == "scaled_sum" and kernel["arch"] == "sm90"
        assert kernel["num_stages"] == 3 and kernel["num_ctas"] == 1
        assert kernel["asm"]["ptx"]["text"].startswith("//") and \
            len(kernel["asm"]["ptx"]["text"]) == 200 < kernel["asm"]["ptx"]["chars"]
        assert "Function : scaled_sum" in kernel["asm"]["sass"]["text"]
        assert kernel["asm"]["ttgir"]["text"].startswith("#blocked = #ttg.blocked<")
    assert (free["num_warps"], free["maxnreg"], free["n_spills"]) == (4, None, 0)
    assert free["shared"] > 0 and 32 < free["n_regs"] <= 255
    assert (capped["num_warps"], capped["maxnreg"], capped["n_regs"]) == (1, 32, 32)
    assert capped["n_spills"] > 0  # 2048 floats over 32 threads do not fit 32 registers


def test_a_hostile_cache_is_read_as_data(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "k.json").write_text("{not json")
    (tmp_path / "a" / "k.cubin").write_bytes(b"\x7fELF garbage")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "k.json").write_text(json.dumps({"name": "k", "num_warps": 8}))
    (tmp_path / "b" / "k.cubin").write_bytes(b"\x7fELF garbage")
    (tmp_path / "b" / "k.ptx").symlink_to("/etc/hostname")  # read as text, cut: harmless
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "only.json").write_text("[]")
    (kernel,) = kernels_in(tmp_path, ["sass"], 100)
    assert kernel["name"] == "k" and kernel["num_warps"] == 8
    assert "n_regs" not in kernel and kernel["asm"] == {}  # cuobjdump cannot read it
    assert kernels_in(tmp_path / "missing", [], 0) == []


_HEAD = ["ID", "Process ID", "Process Name", "Kernel Name", "gpu__time_duration.sum",
         "sm__throughput.avg.pct_of_peak_sustained_elapsed",
         "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
         "dram__throughput.avg.pct_of_peak_sustained_elapsed", "dram__bytes.sum.per_second",
         "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
         "sm__warps_active.avg.pct_of_peak_sustained_active",
         "sm__maximum_warps_per_active_cycle_pct", "launch__registers_per_thread",
         "launch__grid_size", "launch__block_size", "launch__shared_mem_per_block_static",
         "launch__shared_mem_per_block_dynamic",
         "smsp__warp_issue_stalled_long_scoreboard_per_warp_active.pct",
         "smsp__warp_issue_stalled_barrier_per_warp_active.pct",
         "smsp__warp_issue_stalled_wait_per_warp_active.pct"]
#: ncu picks each unit to fit its value (as it printed on an H200, time short and size long).
_UNITS = ["", "", "", "", "us", "%", "%", "%", "Gbyte/second", "%", "%", "%",
          "register/thread", "", "", "byte/block", "Kbyte/block", "%", "%", "%"]
_ROW = ["0", "4242", "python3.11", "_attn_fwd_ptr", "1,234.57", "71.5", "40.2", "38.9",
        "1,520", "55.25", "11.8", "12.5", "168", "512", "256", "0", "98.304", "30.5",
        "12.25", "4.5"]
#: What ``ncu --import R --csv --page raw`` prints: its messages, then quoted CSV rows.
NCU_CSV = "\n".join(["==PROF== Connected to process 4242 (/usr/bin/python3.11)",
                     *(",".join(f'"{cell}"' for cell in row) for row in (_HEAD, _UNITS, _ROW)),
                     "==PROF== Disconnected from process 4242"]) + "\n"


def test_nsight_compute_s_csv_becomes_one_paragraph_per_kernel() -> None:
    (row,) = ncu_rows(NCU_CSV)
    assert row["Process ID"] == "4242" and row["launch__registers_per_thread"] == "168"
    text = profile_text("attempt 2 on d64-n1024", [row])
    assert text.splitlines()[0] == ("attempt 2 on d64-n1024: Nsight Compute, 1 launches "
                                    "profiled, 1 kernels")
    for part in ("_attn_fwd_ptr (grid 512, block 256, 168 registers/thread, 98,304 B "
                 "shared/block): duration 1235 us",
                 "compute (SM) 71.5%, memory 40.2%, DRAM 38.9% (1.52 TB/s)",
                 "tensor pipes active: pipe_tensor_op_hmma_cycles_active 55.2%",
                 "achieved 11.8% of peak warps, theoretical 12.5%",
                 "stalls (% of active warps' cycles): long_scoreboard 30.5, barrier 12.2, "
                 "wait 4.5"):
        assert part in text, part
    assert ncu_rows("==ERROR== the profiler could not connect\n") == []


def test_the_error_map_is_a_few_lines_of_digits() -> None:
    tolerance = 1e-3
    values = [[0.0] * 8 for _ in range(40)]
    values[5][2] = 0.5          # 500x the tolerance: digit 3
    values[33][7] = None        # NaN or Inf
    lines = error_map_text({"fixed": {"batch": 1, "head": 0}, "axes": ["query", "dim"],
                            "row_step": 2, "values": values}, tolerance)
    assert lines[0].startswith("  error map over (query, dim) at batch=1, head=0: each cell "
                               "6 query x 1 dim")
    rows = [re.fullmatch(r" +(\d+) (\S+)", line).groups() for line in lines[1:]]
    assert [int(r) for r, _ in rows] == list(range(0, 80, 6))
    assert rows[1][1] == "..3....." and rows[11][1] == ".......#"
    assert all(set(cells) == {"."} for i, (_, cells) in enumerate(rows) if i not in (1, 11))


def test_the_profile_asks_for_the_attempt_s_triton_kernels() -> None:
    module = ("import triton\nfrom triton import jit\n\n@triton.jit\ndef _k(x):\n    pass\n\n"
              "@triton.autotune(configs=[], key=[])\n@triton.jit\ndef _tuned(x):\n    pass\n\n"
              "@jit\ndef _bare(x):\n    pass\n\ndef attention(q):\n    return q\n")
    assert jit_names([module, "def (broken", "x = 1\n"]) == ["_bare", "_k", "_tuned"]


@pytest.mark.parametrize("device, server, store, shared", [
    ("cuda", True, True, True), ("cuda", False, True, False), ("cpu", True, True, False),
    ("cuda", True, False, False)])
def test_the_workbench_compiles_where_the_run_s_evaluations_do(
        tmp_path: Path, device: str, server: bool, store: bool, shared: bool) -> None:
    settings = EvalSettings(device, 2, 5.0, 60.0, 3.0, tmp_path, compile_server=server,
                            store=tmp_path / "store" if store else None)
    cache = Bench(get_task("attention"), settings, tmp_path / "step")._compile_cache()
    assert cache == (str(tmp_path / "store" / "compile-cache") if shared else None)
    request = {"attempt": str(tmp_path / "a.py"), "task": "attention", "cuda": True,
               "timeout_s": 5, "memory_limit_bytes": 0, "compile_cache": cache}
    with workbench._box(request, "attempt") as box, workbench._box(request, "attempt") as other:
        if shared:  # one server for the process's sandboxes, over the run's cache
            assert box.compile_server is other.compile_server is not None
            assert box.compile_server.cache == tmp_path / "store" / "compile-cache"
        else:
            assert box.compile_server is None
