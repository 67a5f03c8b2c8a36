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

from dataclasses import asdict, dataclass
from typing import Any

import torch

from .sandbox import CandidateFault, Sandbox
from .tasks import Call, Case, Task

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
                   float(truth[tuple(worst)]), n_exceeding, err.numel(), n_nan, n_inf)


def check_case(task: Task, sandbox: Sandbox, case: Case, device: str, *,
               timed: bool = False) -> tuple[Verdict, list[float]]:
    """Run ``case`` through the candidate (timed or once) and judge what came back.

    The inputs the candidate saw are compared with a private copy afterwards, and the
    references are computed from that copy, so neither a mutated input nor a
    changed reference can hide a wrong output. Returns the verdict and, when
    ``timed``, the per-round seconds.
    """
    call = task.make_inputs(case, device)
    pristine = Call(tuple(_copy(a) for a in call.args), dict(call.kwargs))
    times: list[float] = []
    try:
        if timed:
            times, out = sandbox.time(call)
        else:
            out = sandbox.call(call)
    except CandidateFault as fault:
        return Verdict(False, fault.kind, str(fault), traceback=fault.traceback or None), times
    if isinstance(out, dict) and "not_a_tensor" in out:
        return Verdict(False, "output-type", f"returned {out['not_a_tensor']}, "
                       "not a plain torch.Tensor"), times
    for i, (seen, kept) in enumerate(zip(call.args, pristine.args)):
        if isinstance(seen, torch.Tensor) and not _same_bits(seen, kept):
            return Verdict(False, "input-mutated", f"the candidate modified input {i} "
                           f"(of shape {tuple(seen.shape)})"), times
    truth = task.reference(pristine, torch.float64)
    yardstick = Call(tuple(_tf32(a) for a in pristine.args), pristine.kwargs)
    lowp = task.reference(yardstick, pristine.args[0].dtype)
    return check_output(task, pristine, out, truth, lowp), times


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
