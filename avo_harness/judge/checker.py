"""Judging one output against the truth, with a tolerance the computation has earned.

The rule (FlashAttention's): a candidate's largest error against a float64
reference may be at most ``FACTOR`` times the largest error of the same
computation done plainly in the inputs' own dtype, plus one unit in the last
place of the output's scale. float32 inputs are held to tf32, the precision in
which tensor cores multiply them by default (Triton's and cuBLAS's default): their
yardstick runs on inputs rounded to tf32. The bound grows with the problem exactly as much as
honest low-precision arithmetic does, so a shortcut that only survives small
inputs is caught on large ones.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from .roofline import SLACK
from .sandbox import CandidateFault, Sandbox
from ..tasks import Call, Case, Task
from .timer import Rounds

FACTOR = 2.0
#: One unit in the last place, relative to 1 (float32 counts as tf32).
_ULP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-10,
        torch.float64: 2.0**-52}


@dataclass(frozen=True)
class Verdict:
    """What the comparison found; ``rule`` names the broken rule when ``passed`` is false."""

    passed: bool
    rule: str
    message: str
    max_abs_err: float | None = None
    rel_err: float | None = None
    tolerance: float | None = None
    lowp_err: float | None = None
    worst_index: dict[str, int] | None = None
    worst_value: float | None = None
    worst_expected: float | None = None
    n_exceeding: int | None = None
    n_total: int | None = None
    n_nan: int | None = None
    n_inf: int | None = None
    error_map: dict[str, Any] | None = None
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def check_output(task: Task, call: Call, out: object, truth: torch.Tensor,
                 lowp: torch.Tensor) -> Verdict:
    """Compare ``out`` with ``truth`` (float64) under the bound that ``lowp`` earns."""
    shape, dtype = task.output_like(call)
    device = call.args[0].device
    if type(out) is not torch.Tensor:
        return Verdict(False, "output-type",
                       f"returned {type(out).__module__}.{type(out).__qualname__}, "
                       "not a plain torch.Tensor")
    for what, got, want in (("shape", tuple(out.shape), shape), ("dtype", out.dtype, dtype),
                            ("device", out.device, device), ("layout", out.layout, torch.strided)):
        if got != want:
            return Verdict(False, f"output-{what}", f"output {what} is {got}, expected {want}")

    out64 = out.detach().to(torch.float64)
    err = (out64 - truth).abs()
    n_nan = int(torch.isnan(out64).sum())
    n_inf = int(torch.isinf(out64).sum())
    # NaN compares false with everything: count it as infinitely wrong.
    err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
    lowp_err = float((lowp.to(torch.float64) - truth).abs().max()) if truth.numel() else 0.0
    scale = float(truth.abs().max()) if truth.numel() else 0.0
    tolerance = FACTOR * lowp_err + _ULP[dtype] * max(scale, 1.0)
    if not truth.numel():
        return Verdict(True, "ok", "empty output", 0.0, 0.0, tolerance, lowp_err)

    flat = int(torch.argmax(err))
    worst = [int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape)]
    max_abs = float(err.reshape(-1)[flat])
    n_exceeding = int((err > tolerance).sum())
    ref_norm = float(truth.norm())
    rel = float((out64 - truth).nan_to_num(nan=float("inf")).norm() / ref_norm) if ref_norm else max_abs
    dims = task.output_dims if len(task.output_dims) == len(worst) else \
        tuple(f"dim{i}" for i in range(len(worst)))
    passed = n_exceeding == 0 and n_nan == 0 and n_inf == 0
    where = ", ".join(f"{n}={i}" for n, i in zip(dims, worst))
    message = (f"max abs error {max_abs:.3e} {'<=' if passed else '>'} tolerance {tolerance:.3e} "
               f"({FACTOR:g} x {lowp_err:.3e} of a {str(dtype).removeprefix('torch.')} "
               f"reference + 1 ulp); worst at {where}: got {float(out64[tuple(worst)]):.6g}, "
               f"expected {float(truth[tuple(worst)]):.6g}; {n_exceeding}/{err.numel()} "
               f"elements over tolerance; {n_nan} NaN, {n_inf} Inf")
    return Verdict(passed, "ok" if passed else "tolerance", message, max_abs, rel, tolerance,
                   lowp_err, dict(zip(dims, worst)), float(out64[tuple(worst)]),
                   float(truth[tuple(worst)]), n_exceeding, err.numel(), n_nan, n_inf,
                   None if passed else error_map(err, worst, dims))


#: Rows of an error map; longer outputs are max-pooled down to this.
_MAP_ROWS = 256


def error_map(err: torch.Tensor, worst: list[int],
              dims: tuple[str, ...]) -> dict[str, Any] | None:
    """The absolute error over the last two dimensions where the worst element lies.

    For attention that is (query, dim) for the worst batch and head: the picture
    that shows a missing tail mask, a wrong diagonal or a wrong head. Rows are
    max-pooled to at most 256; a NaN or Inf error is written as null.
    """
    if err.dim() < 2:
        return None
    plane = err[tuple(worst[:-2])]
    step = max(1, -(-plane.shape[0] // _MAP_ROWS))
    if step > 1:
        pad = (-plane.shape[0]) % step
        padded = torch.nn.functional.pad(plane.T, (0, pad), value=0.0).T
        plane = padded.reshape(-1, step, plane.shape[1]).amax(dim=1)
    values = [[v if v != float("inf") else None for v in row] for row in plane.tolist()]
    return {"fixed": dict(zip(dims[:-2], worst[:-2])), "axes": list(dims[-2:]),
            "row_step": step, "values": values}


def check_case(task: Task, sandbox: Sandbox, case: Case, device: str) -> Verdict:
    """Run ``case`` through the candidate once and judge what came back.

    The inputs the candidate saw are compared with a private copy afterwards, and the
    references are computed from that copy, so neither a mutated input nor a
    changed reference can hide a wrong output. The output must not change after
    the call returned (another stream, a thread, lazy work finishing late).
    """
    call = task.make_inputs(case, device)
    pristine = _pristine(call)
    try:
        out, early = sandbox.call(call)
    except CandidateFault as fault:
        return fault_verdict(fault)
    if isinstance(out, dict):
        return _described(out)
    mutated = _mutated(call, pristine)
    if mutated is not None:
        return mutated
    if isinstance(early, torch.Tensor) and not _same_bits(early, out):
        return Verdict(False, "deferred-write", "the output changed after the call returned "
                       "(work still running on another stream, in a thread, or deferred)")
    truth, lowp = references(task, pristine)
    return check_output(task, pristine, out, truth, lowp)


#: Powers of two: scaling the linear argument by one scales the exact output exactly.
_SCALES = (1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 4.0, -4.0, 0.25, -0.25, 8.0, -8.0, 0.125, -0.125)
#: Rounds in a schedule: room for the GPU plan's warm-up and its timed rounds.
_ROUNDS = 42
_MIN_SETS = 3
_KEEP = 3
# Memory the input sets (and the parent's pristine copies) may take: a quarter of the free
# device memory; on a CPU, well inside the child's address-space limit.
_CPU_BUDGET_BYTES = 1 << 30


def _input_sets(task: Task, case: Case, device: str) -> int:
    """As many distinct input sets as there are rounds, as far as memory allows: then no
    round sees data an earlier one saw, and nothing a candidate computed from earlier
    inputs (an output, or scores from q and k alone) can be reused."""
    if device == "cuda":
        budget = torch.cuda.mem_get_info()[0] / 4
    else:
        budget = _CPU_BUDGET_BYTES
    per_set = 2 * 1.25 * task.bytes_moved(case)  # the set and its copy; padded layouts
    return max(_MIN_SETS, min(_ROUNDS, int(budget // max(per_set, 1.0))))


def check_timed(task: Task, sandbox: Sandbox, case: Case, device: str, *, floor_s: float | None,
                rng: random.Random) -> tuple[Verdict, list[float]]:
    """Time ``case`` over fresh private inputs each round and verify what the rounds returned.

    ``rng`` must be private to the parent (the candidate can neither read nor
    reproduce it): it draws the input sets, the order of (set, scale) per round, and
    which rounds' outputs are verified besides the last. A timing under ``floor_s``
    (the physical floor), or device time that misses work the host saw, is a fault.
    Returns the verdict and the per-round seconds.
    """
    sets = _input_sets(task, case, device)
    calls = [task.make_inputs({**case, "seed": rng.randrange(2**31)}, device)
             for _ in range(sets)]
    pristine = [_pristine(call) for call in calls]
    # Round i: set i mod sets; where sets repeat, the linear input takes another scale.
    scales = _SCALES if task.linear_arg is not None else (1.0,)
    schedule = [(i % sets, scales[i // sets % len(scales)]) for i in range(_ROUNDS)]
    rng.shuffle(schedule)
    keep = frozenset(rng.sample(range(len(schedule)), _KEEP))
    rounds = Rounds([call.args for call in calls], dict(calls[0].kwargs), schedule,
                    task.linear_arg, keep)
    try:
        times, host_times, kept, executed = sandbox.time(rounds)
    except CandidateFault as fault:
        return fault_verdict(fault), []
    for call, clean in zip(calls, pristine):
        mutated = _mutated(call, clean)
        if mutated is not None:
            return mutated, times
    truths: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for index in sorted(kept):
        out = kept[index]
        if isinstance(out, dict):
            return _described(out), times
        which, scale = schedule[index]
        if which not in truths:
            truths[which] = references(task, pristine[which])
        truth, lowp = truths[which]
        verdict = check_output(task, pristine[which], out, truth * scale, lowp * scale)
        if not verdict.passed:
            return replace(verdict, message=f"round {index + 1} of {executed} (input set "
                           f"{which + 1}, linear input scaled by {scale:g}): "
                           f"{verdict.message}"), times
    if not times:
        return Verdict(False, "protocol", "no timed round came back"), times
    median = statistics.median(times)
    host = statistics.median(host_times)
    if host > 1.5 * median + _ESCAPE_S:
        return Verdict(False, "timing-escape", f"device time {median * 1e3:.3f} ms per call "
                       f"but the host waited {host * 1e3:.3f} ms for it: work ran outside "
                       "the timed stream (another stream, a thread, or deferred)"), times
    if floor_s is not None and median < floor_s * SLACK:
        return Verdict(False, "impossible-speed", f"median {median * 1e3:.4f} ms is below "
                       f"the physical floor {floor_s * 1e3:.4f} ms of this configuration on "
                       "this machine (FLOPs over the measured matrix rate, bytes over the "
                       "measured copy bandwidth): work was skipped, cached or not timed"), times
    return Verdict(True, "ok", f"{len(kept)} timed outputs verified"), times


# Host-side slack per round for launch overhead and the tail of the L2 flush.
_ESCAPE_S = 250e-6


def _pristine(call: Call) -> Call:
    return Call(tuple(_copy(a) for a in call.args), dict(call.kwargs))


def references(task: Task, pristine: Call) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 truth, and the yardstick: the same computation in the inputs' dtype."""
    truth = task.reference(pristine, torch.float64)
    yardstick = Call(tuple(_tf32(a) for a in pristine.args), pristine.kwargs)
    return truth, task.reference(yardstick, pristine.args[0].dtype)


def _mutated(call: Call, pristine: Call) -> Verdict | None:
    for i, (seen, kept) in enumerate(zip(call.args, pristine.args)):
        if isinstance(seen, torch.Tensor) and not _same_bits(seen, kept):
            return Verdict(False, "input-mutated", f"the candidate modified input {i} "
                           f"(of shape {tuple(seen.shape)})")
    return None


def fault_verdict(fault: CandidateFault) -> Verdict:
    """The verdict on a candidate that raised, crashed, hung or broke a rule."""
    return Verdict(False, fault.kind, str(fault), traceback=fault.traceback or None)


def _described(out: dict[str, str]) -> Verdict:
    """The verdict on an output the child described instead of sending (``_worker._checked``)."""
    if "layout" in out:
        return Verdict(False, "output-layout", f"output layout is {out['layout']}, expected "
                       "torch.strided")
    return Verdict(False, "output-type", f"returned {out.get('not_a_tensor')}, "
                   "not a plain torch.Tensor")


def _tf32(value: Any) -> Any:
    """float32 tensors rounded to tf32's 10-bit mantissa (to nearest); others unchanged."""
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.float32):
        return value
    bits = value.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view(value.shape)


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality: NaN equals NaN, and -0.0 differs from 0.0."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.contiguous().view(bits), b.contiguous().view(bits))
    return torch.equal(a, b)
