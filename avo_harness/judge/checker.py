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

import math
import random
import statistics
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from ..tasks import Call, Case, Task
from .roofline import SLACK
from .sandbox import Binding, CandidateFault, HarnessFault, Sandbox
from .timer import Refresher, plan_for, run_schedule

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
    #: Timed rounds: the median seconds the parent waited beyond the device time it was given.
    wall_gap_s: float | None = None
    #: The root mean square of the absolute error over the output's elements.
    rms_err: float | None = None
    #: Timed rounds that passed: how much of the tolerance their outputs used (``precision``).
    precision: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Reference:
    """The truth of one input set, and what honest low precision costs on it."""

    truth: torch.Tensor  # float64
    lowp_err: float      # largest error of the computation done in the inputs' dtype
    scale: float         # largest magnitude of the truth


def check_output(task: Task, call: Call, out: object, ref: Reference) -> Verdict:
    """Compare ``out`` with the truth under the bound that the plain computation earns."""
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

    truth, lowp_err = ref.truth, ref.lowp_err
    # One ulp of the output's own largest magnitude: of 1.0 instead, a flat output (0.07 at
    # N = 16384) would be allowed ten times its rounding, enough for float8 scores.
    tolerance = FACTOR * lowp_err + _ULP[dtype] * ref.scale
    if not truth.numel():
        return Verdict(True, "ok", "empty output", 0.0, 0.0, tolerance, lowp_err)
    out64 = out.detach().to(torch.float64)
    err = (out64 - truth).abs()
    n_nan = int(torch.isnan(out64).sum())
    n_inf = int(torch.isinf(out64).sum())
    # NaN compares false with everything: count it as infinitely wrong.
    err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)

    flat = int(torch.argmax(err))
    worst = _unravel(flat, tuple(err.shape))
    max_abs = float(err.reshape(-1)[flat])
    n_exceeding = int((err > tolerance).sum())
    ref_norm = float(truth.norm())
    err_norm = float((out64 - truth).nan_to_num(nan=float("inf")).norm())
    rel = err_norm / ref_norm if ref_norm else max_abs
    dims = output_dims(task, len(worst))
    passed = n_exceeding == 0 and n_nan == 0 and n_inf == 0
    where = _where(dims, worst)
    yardstick = "tf32 (rounded to nearest)" if dtype == torch.float32 else \
        str(dtype).removeprefix("torch.")
    message = (f"max abs error {max_abs:.3e} {'<=' if passed else '>'} tolerance {tolerance:.3e} "
               f"({FACTOR:g} x {lowp_err:.3e} of a {yardstick} "
               f"reference + 1 ulp of the largest expected value); worst at {where}: "
               f"got {float(out64[tuple(worst)]):.6g}, "
               f"expected {float(truth[tuple(worst)]):.6g}; {n_exceeding}/{err.numel()} "
               f"elements over tolerance; {n_nan} NaN, {n_inf} Inf")
    if not passed and dtype == torch.float32 and not (n_nan or n_inf):
        message += ("; tensor-core tf32 truncates and can exceed this bound: multiply float32 "
                    "with input_precision=\"ieee\" (or \"tf32x3\")")
    return Verdict(passed, "ok" if passed else "tolerance", message, max_abs, rel, tolerance,
                   lowp_err, dict(zip(dims, worst)), float(out64[tuple(worst)]),
                   float(truth[tuple(worst)]), n_exceeding, err.numel(), n_nan, n_inf,
                   None if passed else error_map(err, worst, dims),
                   rms_err=err_norm / math.sqrt(err.numel()))


def output_dims(task: Task, ndim: int) -> tuple[str, ...]:
    """The names of an output's dimensions: the task's, or positional ones."""
    return task.output_dims if len(task.output_dims) == ndim else \
        tuple(f"dim{i}" for i in range(ndim))


def _where(dims: tuple[str, ...], index: list[int]) -> str:
    return ", ".join(f"{n}={i}" for n, i in zip(dims, index))


def precision(verdicts: list[Verdict]) -> dict[str, float] | None:
    """How much of the tolerance the outputs of passing ``verdicts`` used, together.

    Each element's error against the float64 truth is divided by its output's tolerance
    (the one scalar ``check_output`` holds every element to, so an element passes iff its
    ratio is at most 1): ``max`` is the largest ratio, ``rms`` the root mean square of the
    ratios over all the outputs' ``elements``. Read from figures the check already
    computed, so it costs nothing; None for no elements."""
    return merge_precision([{"max": v.max_abs_err / v.tolerance, "rms": v.rms_err / v.tolerance,
                             "elements": v.n_total} for v in verdicts if v.n_total])


def merge_precision(parts: list[dict[str, float]]) -> dict[str, float] | None:
    """``precision`` over the union of the elements of several such statistics (the
    rounds of one configuration, the configurations of one candidate)."""
    elements = sum(int(p["elements"]) for p in parts)
    if not elements:
        return None
    return {"max": max(p["max"] for p in parts),
            "rms": math.sqrt(sum(p["rms"] ** 2 * p["elements"] for p in parts) / elements),
            "elements": elements}


#: Rows of an error map; longer outputs are max-pooled down to this.
_MAP_ROWS = 256


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    """The index of element ``flat`` of a contiguous tensor of ``shape``, in plain integers
    (``torch.unravel_index`` would import sympy, seconds on the first failure check)."""
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return index[::-1]


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


class HarnessError(Exception):
    """The parent's own work failed (inputs, references, memory): not the candidate's fault."""


def harness_verdict(exc: BaseException, doing: str) -> Verdict:
    return Verdict(False, "harness-error", f"the harness failed while {doing}: "
                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])


#: What the parent's own tensor work raises when the machine runs short (torch's
#: OutOfMemoryError is a RuntimeError).
_HARNESS_FAULTS = (RuntimeError, MemoryError, OSError, HarnessError, HarnessFault)


def check_case(task: Task, sandbox: Sandbox, case: Case, device: str) -> Verdict:
    """Run ``case`` through the candidate once and judge what came back.

    The parent keeps the inputs it wrote and compares the live buffers with them
    afterwards; the references come from its own copy, so neither a mutated input nor a
    changed reference can hide a wrong output. The output slot must not change after
    the child answered (another stream, a thread, lazy work finishing late).
    """
    return _run_case(task, sandbox, case, device)[0]


def _run_case(task: Task, sandbox: Sandbox, case: Case, device: str
              ) -> tuple[Verdict, tuple[Call, Binding, torch.Tensor] | None]:
    """``check_case``'s verdict and, when it passed, the inputs written, their binding and
    the parent's copy of the verified output."""
    try:
        call = task.make_inputs(case, device)
        shape, dtype = task.output_like(call)
    except _HARNESS_FAULTS as exc:
        return harness_verdict(exc, "making the inputs"), None
    try:
        binding, returned = sandbox.call(call, shape, dtype)
    except CandidateFault as fault:
        return fault_verdict(fault), None
    except _HARNESS_FAULTS as exc:
        return harness_verdict(exc, "laying out the inputs"), None
    if returned.out is None:
        return described_verdict(returned.described or {}), None
    mutated = _mutated(binding.args, call.args)
    if mutated is not None:
        return mutated, None
    try:
        ref = references(task, call)
    except _HARNESS_FAULTS as exc:
        return harness_verdict(exc, "computing the reference"), None
    if not same_bits(binding.out, returned.out):
        return _DEFERRED, None
    verdict = check_output(task, call, returned.out, ref)
    return verdict, (call, binding, returned.out) if verdict.passed else None


#: Elements of a changed output named in a ``nondeterministic`` failure.
_SHOWN = 3


def check_repeatable(task: Task, sandbox: Sandbox, case: Case, device: str, *, runs: int,
                     exact: bool, rng: random.Random) -> Verdict:
    """Verify one call of ``case`` on a fresh private input set, then call the candidate
    ``runs`` more times on those very inputs and compare each output with the verified one.

    Each call is a timed call's like: the inputs written again before it, checked after it,
    the output slot copied by the parent as the child answers (the comparison is the
    parent's, on what it copied). Outputs must match bit for bit, or, with ``exact`` false
    (a candidate declaring ``DETERMINISTIC = False``: atomics whose order varies), differ
    by at most the verified call's tolerance; otherwise ``nondeterministic`` (a race,
    uninitialised memory, state carried between calls)."""
    verdict, kept = _run_case(task, sandbox, {**case, "seed": rng.randrange(2**31)}, device)
    if kept is None:
        return verdict
    call, binding, verified = kept
    allowed = None if exact else verdict.tolerance
    refresh = Refresher(device == "cuda")
    changed: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for run in range(1, runs + 1):
        try:
            refresh(binding.args, call.args)
            returned = sandbox.invoke(binding)
        except CandidateFault as fault:
            return fault_verdict(fault)
        except _HARNESS_FAULTS as exc:
            return harness_verdict(exc, "repeating the call")
        if returned.out is None:
            return described_verdict(returned.described or {})
        mutated = _mutated(binding.args, call.args)
        if mutated is not None:
            return mutated
        if not same_bits(binding.out, returned.out):
            return _DEFERRED
        differs = _differs(verified, returned.out, allowed)
        if bool(differs.any()):
            changed.append((run, returned.out, differs))
    how = "bit for bit" if allowed is None else f"within the tolerance {allowed:.3e}"
    if not changed:
        return Verdict(True, "ok", f"{runs} more runs on identical inputs matched the verified "
                       f"output {how}")
    run, again, differs = changed[0]
    dims = output_dims(task, verified.dim())
    # Nine digits tell apart any two float32 values (and so any of a narrower type).
    shown = "; ".join(
        f"({_where(dims, i)}): {float(verified[tuple(i)]):.9g} then {float(again[tuple(i)]):.9g}"
        for i in torch.nonzero(differs)[:_SHOWN].tolist())
    return Verdict(False, "nondeterministic", f"{len(changed)} of {runs} runs on identical "
                   f"inputs did not match the verified output {how}: run {run} differed in "
                   f"{int(differs.sum())} of {differs.numel()} elements, first at {shown}")


def _differs(verified: torch.Tensor, again: torch.Tensor, allowed: float | None) -> torch.Tensor:
    """Where ``again`` differs from ``verified``: in its bits, or by more than ``allowed``."""
    if allowed is None:
        return _bits(verified) != _bits(again)
    return ~((again.to(torch.float64) - verified.to(torch.float64)).abs() <= allowed)


_DEFERRED = Verdict(False, "deferred-write", "the output changed after the call returned "
                    "(work still running on another stream, in a thread, or deferred)")

#: Rounds in a schedule: room for the GPU plan's warm-up and its timed rounds.
_ROUNDS = 42


#: Median seconds per round the parent may wait beyond the device time it is given, past
#: what a round of the harness's own stand-in costs (``calibrate``: the pipe both ways, the
#: copy of the output, the GPU switching between the two processes), and as a share of the
#: device time.
ESCAPE_S = 1e-3
ESCAPE_SHARE = 0.1
_CALIBRATION_ROUNDS = 15


def calibrate(task: Task, stand_in: Sandbox, case: Case, device: str,
              rng: random.Random) -> float:
    """The median seconds by which the parent's clock exceeds the device time on a round of
    ``case`` when the child is the harness's own stand-in (a ``Sandbox`` without a path),
    which returns at once: what the protocol itself costs, measured on a child the candidate
    cannot slow down."""
    call = task.make_inputs({**case, "seed": rng.randrange(2**31)}, device)
    binding = stand_in.bind(call, *task.output_like(call))
    refresh = Refresher(device == "cuda")
    gaps = []
    for _ in range(_CALIBRATION_ROUNDS):
        refresh(binding.args, call.args)
        returned = stand_in.invoke(binding)
        gaps.append(returned.wall_s - (returned.device_s or 0.0))
    return statistics.median(gaps[1:])


def check_timed(task: Task, sandbox: Sandbox, case: Case, device: str, *, floor_s: float | None,
                rng: random.Random, protocol_s: float = 0.0) -> tuple[Verdict, list[float]]:
    """Time ``case`` over fresh private inputs each round and verify every timed output.

    ``rng`` is the parent's (the candidate can neither read nor reproduce it): it draws a
    new input set for every round, warm-up or timed, made just before the round and
    written into the live buffers after the previous call returned, so no round sees data
    any earlier round saw and nothing computed from earlier inputs (an output, scores from
    q and k) can be reused. Only the current set and its reference are held, so several
    evaluations share one GPU without racing for memory. A timing under ``floor_s`` (the
    physical floor), or device time that the parent's clock does not account for (beyond
    ``protocol_s``, what ``calibrate`` measured), is a fault. Returns the verdict (when it
    passed, with the ``precision`` of the timed outputs) and the per-round seconds.
    """
    cuda = device == "cuda"
    try:
        first = task.make_inputs({**case, "seed": rng.randrange(2**31)}, device)
        binding = sandbox.bind(first, *task.output_like(first))
        refresh = Refresher(cuda)
    except CandidateFault as fault:
        return fault_verdict(fault), []
    except _HARNESS_FAULTS as exc:
        return harness_verdict(exc, "preparing the timed inputs"), []
    seconds: dict[int, float] = {}
    walls: dict[int, float] = {}
    failure: list[Verdict] = []
    verified: list[Verdict] = []

    def one_round(index: int, timed: bool) -> float:
        if failure:
            return 0.0
        try:  # the parent's own work, before the round and outside its clock
            call = first if index == 0 else task.make_inputs(
                {**case, "seed": rng.randrange(2**31)}, device)
            ref = references(task, call) if timed else None
        except _HARNESS_FAULTS as exc:
            raise HarnessError(f"making the round's inputs: {exc}") from exc
        refresh(binding.args, call.args)
        returned = sandbox.invoke(binding)
        if returned.out is None:
            failure.append(described_verdict(returned.described or {}))
            return returned.wall_s
        verdict = _mutated(binding.args, call.args) or (
            check_output(task, call, returned.out, ref) if ref is not None else None)
        if verdict is not None and not verdict.passed:
            failure.append(replace(verdict, message=f"round {index + 1}: {verdict.message}"))
        elif not same_bits(binding.out, returned.out):
            failure.append(_DEFERRED)
        elif verdict is not None:
            verified.append(verdict)
        seconds[index] = returned.wall_s if returned.device_s is None else returned.device_s
        walls[index] = returned.wall_s
        return seconds[index]

    try:
        timed = run_schedule(_ROUNDS, plan_for(cuda), one_round)
    except CandidateFault as fault:
        return fault_verdict(fault), []
    except HarnessError as exc:
        return harness_verdict(exc, "timing"), []
    times = [seconds[i] for i in timed if i in seconds]
    if failure:
        return failure[0], times
    verdict = _judge_clock(times, [walls[i] for i in timed], cuda, floor_s, protocol_s)
    return (replace(verdict, precision=precision(verified)) if verdict.passed else verdict), times


def _judge_clock(times: list[float], walls: list[float], cuda: bool, floor_s: float | None,
                 protocol_s: float) -> Verdict:
    """The device times the child gave, held against the parent's clock and the floor."""
    if not times:
        return Verdict(False, "protocol", "no timed round came back")
    median = statistics.median(times)
    if cuda:
        forged = [i for i, (t, w) in enumerate(zip(times, walls)) if t > w + 2e-5]
        if forged:
            i = forged[0]
            return Verdict(False, "timing-escape", f"timed round {i + 1} claims "
                           f"{times[i] * 1e3:.3f} ms of device time, but the parent waited only "
                           f"{walls[i] * 1e3:.3f} ms for it: the clock was forged")
        gap = statistics.median(w - t for t, w in zip(times, walls))
        if gap > protocol_s + ESCAPE_S + ESCAPE_SHARE * median:
            return Verdict(False, "timing-escape", f"device time {median * 1e3:.3f} ms per call "
                           f"but the parent waited {gap * 1e3:.3f} ms more for each, where the "
                           f"protocol itself costs {protocol_s * 1e3:.3f} ms: work ran outside "
                           "the timed events (before them, after them, on another stream, or "
                           "in a thread)", wall_gap_s=gap)
    else:
        gap = None
    if floor_s is not None and median < floor_s * SLACK:
        return Verdict(False, "impossible-speed", f"median {median * 1e3:.4f} ms is below "
                       f"the physical floor {floor_s * 1e3:.4f} ms of this configuration on "
                       "this machine (FLOPs over the measured matrix rate, bytes over the "
                       "measured copy bandwidth): work was skipped, cached or not timed")
    return Verdict(True, "ok", f"{len(times)} timed outputs verified", wall_gap_s=gap)


def references(task: Task, call: Call) -> Reference:
    """The float64 truth, and the yardstick: the same computation in the inputs' dtype."""
    truth = task.reference(call, torch.float64)
    yardstick = Call(tuple(_tf32(a) for a in call.args), call.kwargs)
    lowp = task.reference(yardstick, call.args[0].dtype)
    lowp_err = float((lowp.to(torch.float64) - truth).abs().max()) if truth.numel() else 0.0
    scale = float(truth.abs().max()) if truth.numel() else 0.0
    return Reference(truth, lowp_err, scale)


def _mutated(live: tuple[Any, ...], written: tuple[Any, ...]) -> Verdict | None:
    for i, (seen, kept) in enumerate(zip(live, written)):
        if isinstance(seen, torch.Tensor) and not same_bits(seen, kept):
            return Verdict(False, "input-mutated", f"the candidate modified input {i} "
                           f"(of shape {tuple(seen.shape)})")
    return None


def fault_verdict(fault: CandidateFault) -> Verdict:
    """The verdict on a candidate that raised, crashed, hung or broke a rule."""
    return Verdict(False, fault.kind, str(fault), traceback=fault.traceback or None)


def described_verdict(out: dict[str, str]) -> Verdict:
    """The verdict on an output that did not fit the slot, as the child described it."""
    for what in ("layout", "shape", "dtype", "device"):
        if what in out:
            return Verdict(False, f"output-{what}", f"output {what} is {out[what]}")
    return Verdict(False, "output-type", f"returned {out.get('type')}, not a plain "
                   "torch.Tensor")


def _tf32(value: Any) -> Any:
    """float32 tensors rounded to tf32's 10-bit mantissa (to nearest); others unchanged."""
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.float32):
        return value
    bits = value.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view(value.shape)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality: NaN equals NaN, and -0.0 differs from 0.0."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(_bits(a), _bits(b))


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A floating tensor's words as integers (other tensors as they are)."""
    if not t.is_floating_point():
        return t
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
