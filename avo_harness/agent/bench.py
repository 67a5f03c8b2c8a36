"""The agent's workbench: one case, chosen configurations, compile facts and a profile of
an attempt, each run by the judge's own code in a process of its own (``workbench``).

Every request gets a fresh temporary folder holding the attempt's files (its module and
its helpers, ``_*.py``, beside it) and, for timing, the best committed candidate's; the
process is killed whole when the step's time or the evaluation timeout runs out, and a
failure of any kind is one line for the model (:class:`BenchError`). The answers are
compact text: numbers to four significant digits, error maps as a few lines of digits.
"""
from __future__ import annotations

import ast
import csv
import glob
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avo_harness

from ..evolve.evaluate import EvalSettings, Placement, start
from ..tasks import Case, Task
from .views import floor_text

#: What Nsight Compute is asked for: time, speed of light, the tensor pipes, occupancy,
#: the launch, and the stall reasons (regular expressions match what this GPU has).
NCU_METRICS = (
    "gpu__time_duration.sum",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "dram__bytes.sum.per_second",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "sm__maximum_warps_per_active_cycle_pct",
    "launch__registers_per_thread",
    "launch__grid_size",
    "launch__block_size",
    "launch__shared_mem_per_block_static",
    "launch__shared_mem_per_block_dynamic",
    r"regex:^sm__pipe_tensor.*_cycles_active\.avg\.pct_of_peak_sustained_active$",
    r"regex:^smsp__warp_issue_stalled_.*_per_warp_active\.pct$",
)
#: Where ncu and its injection in the profiled child meet, inside the child's sandbox.
NCU_PORTS = tuple(range(49152, 49152 + 8))
#: Inputs larger than this are not built for one case (the workbench's memory is the
#: machine's).
MAX_CASE_BYTES = {"cpu": 256 << 20, "cuda": 16 << 30}
#: Characters of each IR, PTX or SASS text compile_info returns by default, and at most.
ASM_CHARS, MAX_ASM_CHARS = 4_000, 40_000
#: Rows and columns of the error map the model reads.
_MAP_ROWS, _MAP_COLS = 16, 16


_NO_ANSWER = "the workbench process ended without an answer: "


class BenchError(Exception):
    """The request could not be answered; the message is one line for the model."""


@dataclass(frozen=True)
class Bench:
    task: Task
    settings: EvalSettings
    #: The step's own folder: the machine's ceilings measured once are kept there.
    folder: Path
    #: The GPU the workbench runs on and its lock (``evolve.evaluate.Placement``, a slot's):
    #: what it times or profiles, it does holding the lock the evaluations on that GPU
    #: hold while they time.
    placement: Placement = Placement()

    @property
    def cuda(self) -> bool:
        return self.settings.device == "cuda"

    def case(self, files: dict[str, str], case: Case, limit_s: float) -> dict[str, Any]:
        return self._run({"op": "case", "case": case}, {"attempt": files}, limit_s)

    def time(self, files: dict[str, str], best: dict[str, str], configs: list[dict[str, Any]],
             limit_s: float) -> dict[str, Any]:
        return self._run({"op": "time", "configs": configs},
                         {"attempt": files, "best": best}, limit_s)

    def compile(self, files: dict[str, str], case: Case, asm: list[str], chars: int,
                limit_s: float) -> dict[str, Any]:
        return self._run({"op": "compile", "case": case, "asm": asm, "asm_chars": chars},
                         {"attempt": files}, limit_s)

    def profile(self, files: dict[str, str], case: Case, limit_s: float
                ) -> tuple[list[dict[str, str]], float]:
        """Nsight Compute's metrics of the attempt's kernels on ``case``, one dict per
        kernel launch profiled (metric name to value as ncu prints it), and the seconds
        waited for the GPU's lock. The attempt first runs once without the profiler, in a
        workbench of its own, compiling into a Triton cache that the profiled run starts
        from, so that under ncu nothing is compiled. ncu then starts the attempt's child
        inside the child's sandbox: its injection talks to it over TCP and abstract Unix
        sockets, which reach it only so (outside, the sandbox's network namespace and
        Landlock cut them off, and the profiled child waited for ncu until killed)."""
        tool = ncu()
        assert tool is not None and self.cuda, profile_unavailable(self.cuda)
        names = jit_names(files.values())
        ends = time.monotonic() + limit_s
        with tempfile.TemporaryDirectory(prefix="avo-ncu-") as tmp:
            report = Path(tmp) / "report" / "profile"
            report.parent.mkdir()
            request = {"case": case, "kernel_cache": str(Path(tmp) / "triton")}
            answer = self._run({"op": "warm", **request}, {"attempt": files}, limit_s)
            if "fault" in answer:
                raise BenchError(f"profile: the attempt failed on this input ({answer['fault']}); "
                                 "run_case says where")
            # The clocks as the judge times them (ncu's default locks them to base); only
            # the child itself, not the compilers it might start.
            argv = [tool, "--target-processes", "application-only", "--clock-control", "none",
                    "--port", str(NCU_PORTS[0]), "--max-connections", str(len(NCU_PORTS)),
                    "--metrics", ",".join(NCU_METRICS),
                    "--launch-count", "64", "--export", str(report), "--force-overwrite",
                    *(["--kernel-name", f"regex:^({'|'.join(names)})$"] if names else [])]
            profiler = {"argv": argv, "ports": list(NCU_PORTS), "report_dir": str(report.parent)}
            try:
                answer = self._run({"op": "profile", "profiler": profiler, **request},
                                   {"attempt": files}, ends - time.monotonic(), profiled=True)
            except BenchError as exc:
                text = str(exc)
                if text.startswith(_NO_ANSWER):  # ncu, or the process under it, failed
                    text = f"ncu's run ended without an answer ({text[len(_NO_ANSWER):]})"
                raise BenchError(f"profile: {text[:700]}; compile_info, run_case and "
                                 "time_config still answer") from None
            messages = answer["messages"][:300] or "no message from ncu"
            if "fault" in answer:  # it ran without the profiler: ncu's doing
                raise BenchError("profile: the attempt ran without the profiler but failed "
                                 f"under Nsight Compute ({answer['fault'][:240]}; {messages})")
            rep = report.with_suffix(".ncu-rep")
            if not rep.exists():
                raise BenchError(f"profile: ncu wrote no report ({messages})")
            csv_text = _limited([tool, "--import", str(rep), "--csv", "--page", "raw"], 120,
                                cwd=report.parent, env=dict(os.environ)
                                ).decode(errors="replace")
        rows = ncu_rows(csv_text)
        if not rows:
            raise BenchError(f"profile: ncu profiled no kernel of the attempt ({messages})")
        return rows, float(answer.get("lock_wait_s", 0.0))

    def _compile_cache(self) -> str | None:
        """The compile server's cache of the run (``EvalSettings.compile_cache``): an attempt
        finds the kernels its evaluations, its earlier tool calls and the best committed
        candidate compiled."""
        cache = self.settings.compile_cache()
        return None if cache is None else str(cache)

    def _run(self, request: dict[str, Any], files: dict[str, dict[str, str]], limit_s: float,
             profiled: bool = False) -> dict[str, Any]:
        """Write the files and the request into a new temporary folder, run the workbench
        on it, and return its answer (``profiled``: with what the profiler said)."""
        if limit_s <= 1:
            raise BenchError("not run: the step has no time left for it")
        with tempfile.TemporaryDirectory(prefix="avo-bench-") as tmp:
            work = Path(tmp)
            (work / "tmp").mkdir()
            for who, bundle in files.items():
                folder = work / who / "candidates" / self.task.name
                folder.mkdir(parents=True)
                for name, text in bundle.items():
                    (folder / name).write_text(text)
                request[who] = str(folder / next(iter(bundle)))
            request.update(task=self.task.name, cuda=self.cuda,
                           timeout_s=self.settings.call_timeout_s,
                           memory_limit_bytes=int(self.settings.memory_limit_gib * 2**30),
                           protected=[str(self.settings.rootdir), str(work / "attempt"),
                                      str(Path(avo_harness.__file__).parent)],
                           roofline=str(self.folder / f"roofline-{self.settings.device}.json"),
                           gpu_lock=(str(self.placement.gpu_lock)
                                     if self.placement.gpu_lock is not None else None),
                           compile_cache=self._compile_cache(),
                           result=str(work / "result.json"))
            self.folder.mkdir(parents=True, exist_ok=True)
            (work / "request.json").write_text(json.dumps(request))
            package_root = str(Path(avo_harness.__file__).resolve().parent.parent)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
            env.update(self.placement.env)
            env.update(TMPDIR=str(work / "tmp"), PYTHONPATH=os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
            argv = [sys.executable, "-m", "avo_harness.agent.workbench",
                    str(work / "request.json")]
            try:
                output = _limited(argv, limit_s, cwd=self.settings.rootdir, env=env)
            except BenchError as exc:
                if (work / "waiting").exists():  # the workbench's mark while it waits
                    raise BenchError(f"{exc}, waiting for the GPU's lock: an evaluation was "
                                     "timing on this GPU, so nothing was timed") from None
                raise
            result = work / "result.json"
            if not result.exists():
                tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise BenchError(f"{_NO_ANSWER}{tail[0][:300]}")
            answer = json.loads(result.read_text())
        if "error" in answer:
            raise BenchError(f"the harness failed: {answer['error']}")
        if profiled:  # what the profiler said of its run
            answer["messages"] = " ".join(line for line in output.decode(errors="replace")
                                          .splitlines() if line.startswith(("==ERROR==",
                                                                            "==WARNING==")))
        return answer


def _limited(argv: list[str], limit_s: float, *, cwd: Path, env: dict[str, str]) -> bytes:
    """The output of ``argv`` run in its own process group, killed whole at ``limit_s``."""
    proc = start(argv, cwd=cwd, env=env)
    try:
        output, _ = proc.communicate(timeout=limit_s)
    except BaseException as exc:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if isinstance(exc, subprocess.TimeoutExpired):
            try:  # what it had printed (a sandboxed child dies with it, closing the pipe)
                said = proc.communicate(timeout=5)[0].decode(errors="replace")
            except subprocess.TimeoutExpired:
                said = ""
            proc.wait()
            said = said.strip().splitlines()
            raise BenchError(f"stopped after {limit_s:,.0f} s (the step's time left, or the "
                             "evaluation timeout); its last line: "
                             f"{(said or ['none'])[-1][:200]}") from None
        proc.wait()
        raise
    return output


def profile_unavailable(cuda: bool) -> str | None:
    """Why this machine cannot profile, in one line; None if it can."""
    if not cuda:
        return ("profile: no GPU here: in Triton's interpreter nothing runs on a GPU, so "
                "there is nothing to profile (run_case and time_config time the interpreter)")
    if ncu() is None:
        return ("profile: Nsight Compute (ncu) is not installed on this machine; "
                "compile_info and time_config still answer")
    return None


def ncu() -> str | None:
    """Nsight Compute's command line, if this machine has it."""
    return shutil.which("ncu") or next(iter(sorted(glob.glob("/usr/local/cuda*/bin/ncu"))), None)


def jit_names(sources: Any) -> list[str]:
    """Functions decorated by Triton (``@triton.jit``, ``@triton.autotune(...)``...) in the
    sources: the kernels the profile asks Nsight Compute for."""
    names = []
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(
                    "triton" in ast.unparse(d) or ast.unparse(d).split("(")[0] == "jit"
                    for d in node.decorator_list):
                names.append(node.name)
    return sorted(set(names))


def ncu_rows(text: str) -> list[dict[str, str]]:
    """The launches of ``ncu --csv --page raw``: its first row names the columns, the second
    gives their units; ncu's own messages are not CSV rows. ncu picks each unit to fit the
    value (``usecond``, ``Kbyte/block``, ``Gbyte/second``): times come back in seconds,
    sizes in bytes."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if len(rows) < 3:
        return []
    head, units = rows[0], rows[1]
    scales = dict(zip(head, (_unit_scale(unit) for unit in units)))
    launches = []
    for row in rows[2:]:
        if len(row) != len(head):
            continue
        launch = dict(zip(head, row))
        for key, scale in scales.items():
            value = _number(launch[key]) if scale != 1 else None
            if value is not None:
                launch[key] = repr(value * scale)
        launches.append(launch)
    return launches


_PREFIXES = {"": 1.0, "n": 1e-9, "u": 1e-6, "\u00b5": 1e-6, "m": 1e-3, "K": 1e3, "M": 1e6,
             "G": 1e9, "T": 1e12}


def _unit_scale(unit: str) -> float:
    """What a value in ncu's ``unit`` is multiplied by to be in seconds or bytes: ncu
    names them long (``usecond``, ``Kbyte``) or short (``us``, ``KB``), by version (the
    H200's printed ``us`` beside ``Kbyte/block``)."""
    quantity = unit.split("/", 1)[0]
    for base in ("second", "byte", "s", "B"):
        prefix = quantity.removesuffix(base)
        if quantity.endswith(base) and prefix in _PREFIXES:
            return _PREFIXES[prefix]
    return 1.0


def _number(text: str | None) -> float | None:
    try:
        value = float(str(text).replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def profile_text(label: str, rows: list[dict[str, str]], waited_s: float = 0.0) -> str:
    """One paragraph per kernel (its last launch profiled)."""
    last = {row.get("Kernel Name", "?"): row for row in rows}
    lines = [f"{label}: Nsight Compute, {len(rows)} launches profiled, {len(last)} kernels"]
    for name, row in last.items():
        m = {k: _number(v) for k, v in row.items()}

        def pct(key: str, m: dict[str, float | None] = m) -> str:
            value = m.get(key)
            return "-" if value is None else f"{value:.1f}%"

        duration = m.get("gpu__time_duration.sum")
        dram = m.get("dram__bytes.sum.per_second")
        tensor = ", ".join(f"{k.split('__')[1].split('.')[0]} {v:.1f}%" for k, v in m.items()
                           if k.startswith("sm__pipe_tensor") and v is not None) or "-"
        stalls = sorted(((k.removeprefix("smsp__warp_issue_stalled_")
                          .removesuffix("_per_warp_active.pct"), v) for k, v in m.items()
                         if k.startswith("smsp__warp_issue_stalled_") and v), key=lambda p: -p[1])
        shared = sum(m.get(k) or 0 for k in ("launch__shared_mem_per_block_static",
                                             "launch__shared_mem_per_block_dynamic"))
        lines += [
            f"{name} (grid {row.get('launch__grid_size', '?')}, block "
            f"{row.get('launch__block_size', '?')}, {row.get('launch__registers_per_thread', '?')}"
            f" registers/thread, {shared:,.0f} B shared/block): duration "
            + (f"{duration * 1e6:.4g} us" if duration is not None else "-"),
            f"  throughput: compute (SM) {pct('sm__throughput.avg.pct_of_peak_sustained_elapsed')}"
            f", memory {pct('gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed')}"
            f", DRAM {pct('dram__throughput.avg.pct_of_peak_sustained_elapsed')}"
            + (f" ({dram / 1e12:.3g} TB/s)" if dram else ""),
            f"  tensor pipes active: {tensor}",
            f"  occupancy: achieved {pct('sm__warps_active.avg.pct_of_peak_sustained_active')} "
            f"of peak warps, theoretical {pct('sm__maximum_warps_per_active_cycle_pct')}",
            "  stalls (% of active warps' cycles): "
            + (", ".join(f"{k} {v:.1f}" for k, v in stalls[:6]) or "-"),
        ]
    return "\n".join(lines + waited_text(waited_s))


def case_text(label: str, answer: dict[str, Any]) -> str:
    """run_case's answer: the verdict with its error map, and the case's timing."""
    verdict = answer["verdict"]
    if verdict.get("passed"):
        lines = [f"{label}: correct ({verdict.get('message', '')})"]
    else:
        lines = [f"{label}: WRONG (rule: {verdict.get('rule')}) {verdict.get('message', '')}"]
        if verdict.get("traceback"):
            lines.append("  candidate traceback (end):\n" + verdict["traceback"][-1500:].rstrip())
        if verdict.get("error_map"):
            lines += error_map_text(verdict["error_map"], verdict.get("tolerance") or 0.0)
    if "timing" in answer:
        lines.append("  timed: " + timing_text(answer["timing"]))
    return "\n".join(lines + waited_text(answer.get("lock_wait_s")))


def waited_text(waited_s: float | None) -> list[str]:
    """A line saying how long the workbench waited for the GPU's lock, if it did."""
    if not waited_s:
        return []
    return [f"  (waited {waited_s:.1f} s for the GPU's lock: an evaluation was timing on this "
            "GPU, and timings never overlap)"]


def timing_text(timed: dict[str, Any]) -> str:
    verdict = timed.get("verdict", {})
    if not verdict.get("passed"):
        return f"failed (rule: {verdict.get('rule')}) {verdict.get('message', '')[:400]}"
    return (f"median {timed['median_s'] * 1e3:.4g} ms, IQR {timed['iqr_s'] * 1e3:.2g} ms, "
            f"{timed['rounds']} rounds, {timed['tflops']:.4g} TFLOP/s ({timed['clock']}); "
            + floor_text(timed.get("floor_s"), timed["median_s"]))


def time_text(label: str, answer: dict[str, Any], best: str) -> str:
    """time_config's answer: each configuration for the attempt and the best, and their
    ratio, all from one process and clock."""
    lines = [f"{label} against {best}, timed in one process, interleaved:"]
    ratios = []
    for row in answer["configs"]:
        mine, theirs = row["attempt"], row["best"]
        lines += [f"{row['name']}:", f"  attempt: {timing_text(mine)}",
                  f"  {best}: {timing_text(theirs)}"]
        if mine.get("tflops") and theirs.get("tflops"):
            ratios.append(mine["tflops"] / theirs["tflops"])
            lines.append(f"  attempt / best: {ratios[-1]:.3f}x")
    if len(ratios) == len(answer["configs"]) and ratios:
        lines.append(f"geomean of the ratios over these configurations: "
                     f"{math.prod(ratios) ** (1 / len(ratios)):.3f}x")
    return "\n".join(lines + waited_text(answer.get("lock_wait_s")))


def compile_text(label: str, answer: dict[str, Any]) -> str:
    """compile_info's answer: what Triton compiled for the attempt, kernel by kernel."""
    kernels = answer["kernels"]
    verdict = answer["verdict"]
    said = "correct" if verdict.get("passed") else f"wrong (rule: {verdict.get('rule')})"
    if not kernels:
        return (f"{label}: ran ({said}) but compiled no Triton kernel in its process (it "
                "launched none, or kernels of another kind)")
    lines = [f"{label}: ran ({said}); {len(kernels)} kernels compiled"]
    for k in kernels:
        regs = (f"{k['n_regs']} registers/thread, {k['n_spills']} spilled (4-byte words of "
                "local memory per thread)" if "n_regs" in k else "registers and spills unknown "
                "(cuobjdump could not read the cubin)")
        lines.append(f"{k.get('name')}: num_warps {k.get('num_warps')}, num_stages "
                     f"{k.get('num_stages')}, num_ctas {k.get('num_ctas')}, maxnreg "
                     f"{k.get('maxnreg') or '-'}, {k.get('arch')}; shared memory "
                     f"{k.get('shared')} B; {regs}")
        for kind, text in k.get("asm", {}).items():
            cut = f", first {len(text['text']):,}" if len(text["text"]) < text["chars"] else ""
            lines.append(f"--- {kind} ({text['chars']:,} characters{cut}) ---\n{text['text']}")
    return "\n".join(lines)


def error_map_text(error_map: dict[str, Any], tolerance: float) -> list[str]:
    """The error over the output's last two dimensions where the worst element is, pooled
    to at most 16 x 16 cells (the max of each): '.' within the tolerance, otherwise the
    number of tens by which it is over (1: up to 10x, 2: up to 100x ...), '#' NaN or Inf."""
    values = error_map.get("values") or []
    if not values or not values[0] or tolerance <= 0:
        return []
    rows, cols = len(values), len(values[0])
    step_r, step_c = -(-rows // _MAP_ROWS), -(-cols // _MAP_COLS)
    axes = error_map.get("axes", ["row", "col"])
    fixed = ", ".join(f"{k}={v}" for k, v in (error_map.get("fixed") or {}).items())
    row_step = error_map.get("row_step", 1)
    lines = [f"  error map over ({axes[0]}, {axes[1]}){' at ' + fixed if fixed else ''}: each "
             f"cell {step_r * row_step} {axes[0]} x {step_c} {axes[1]}; '.' within tolerance, "
             "digit n: over it by up to 10^n, '#' NaN/Inf"]
    for r in range(0, rows, step_r):
        cells = []
        for c in range(0, cols, step_c):
            block = [v for line in values[r:r + step_r] for v in line[c:c + step_c]]
            if any(v is None for v in block):
                cells.append("#")
                continue
            worst = max(block)
            cells.append("." if worst <= tolerance else
                         str(min(9, max(1, math.ceil(math.log10(worst / tolerance))))))
        lines.append(f"  {r * row_step:>6} {''.join(cells)}")
    return lines
