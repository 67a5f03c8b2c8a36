"""The tolerance rule and the output rules, on outputs built here and on a candidate's."""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from avo_harness.judge.checker import (FACTOR, Reference, Verdict, check_case, check_output,
                                       check_timed, precision)
from avo_harness.judge.sandbox import Sandbox, SandboxSettings
from avo_harness.tasks import Call, Case, Task, get_task

ATTENTION = get_task("attention")
RMSNORM = get_task("rmsnorm")
# Causal, so the first query rows average few keys and the output is O(1): precision shows.
CAUSAL: Case = {"B": 1, "Hq": 2, "Hkv": 2, "D": 64, "causal": True, "sm_scale": None,
                "layout": "bhnd", "spread": 1.0, "seed": 3}
ROWS: Case = {"dtype": "float16", "layout": "contiguous", "eps": None, "spread": 1.0, "seed": 1}


def _judge(task: Task, case: Case, make_out: Callable[[Call, torch.Tensor], object]) -> Verdict:
    """Judge ``make_out(call, truth)`` against the float64 truth and the plain torch yardstick."""
    call = task.make_inputs(case, "cpu")
    truth = task.reference(call, torch.float64)
    lowp = task.reference(call, call.args[0].dtype)
    return check_output(task, call, make_out(call, truth), _ref(truth, lowp))


def _ref(truth: torch.Tensor, lowp: torch.Tensor) -> Reference:
    return Reference(truth, float((lowp.double() - truth).abs().max()),
                     float(truth.abs().max()))


def _fewer_bits(t: torch.Tensor, dtype: torch.dtype, dropped: int) -> torch.Tensor:
    """``t`` in ``dtype`` with its lowest ``dropped`` mantissa bits truncated."""
    bits = t.to(dtype).view(torch.int16)
    return (bits & ~((1 << dropped) - 1)).view(dtype)


LOW_PRECISION = [(ATTENTION, {**CAUSAL, "dtype": dtype, "Nq": n, "Nk": n})
                 for dtype in ("float16", "bfloat16") for n in (16, 300)]
LOW_PRECISION += [(RMSNORM, {**ROWS, "dtype": dtype, "shape": [8, n]})
                  for dtype in ("float16", "bfloat16") for n in (16, 4096)]
IDS = [f"{task.name}-{case['dtype']}-{case.get('Nq', case.get('shape'))}"
       for task, case in LOW_PRECISION]


@pytest.mark.parametrize(("task", "case"), LOW_PRECISION, ids=IDS)
def test_honest_low_precision_results_pass(task: Task, case: Case) -> None:
    dtype = getattr(torch, case["dtype"])
    # The plain torch computation in the dtype, and one accumulated in float32 and rounded once.
    plain = _judge(task, case, lambda call, truth: task.reference(call, dtype))
    rounded_once = _judge(task, case, lambda call, truth: task.reference(
        call, torch.float32).to(dtype))
    assert plain.passed, plain.message
    assert rounded_once.passed, rounded_once.message
    assert rounded_once.rule == "ok" and rounded_once.n_exceeding == 0


@pytest.mark.parametrize(("dtype", "ulp"), [("float16", torch.finfo(torch.float16).eps),
                                            ("bfloat16", torch.finfo(torch.bfloat16).eps),
                                            ("float32", 2.0**-10)])  # float32 counts as tf32
@pytest.mark.parametrize("spread", [0.01, 8.0])
def test_the_tolerance_is_twice_the_plain_error_plus_one_ulp_of_the_scale(
        dtype: str, ulp: float, spread: float) -> None:
    call = RMSNORM.make_inputs({**ROWS, "dtype": dtype, "shape": [3, 300], "eps": 1.0,
                                "spread": spread}, "cpu")
    truth = RMSNORM.reference(call, torch.float64)
    lowp = RMSNORM.reference(call, call.args[0].dtype)
    verdict = check_output(RMSNORM, call, lowp, _ref(truth, lowp))
    plain_err = float((lowp.double() - truth).abs().max())
    assert verdict.lowp_err == pytest.approx(plain_err)
    assert verdict.tolerance == pytest.approx(
        FACTOR * plain_err + ulp * float(truth.abs().max()))


def test_a_flat_output_is_held_to_the_ulp_of_its_own_scale() -> None:
    """Attention over many keys averages to a small output (the scale 0.07 at N = 16384): an
    error of a few of its ulps, which an ulp of 1.0 would have allowed (float8 scores), fails."""
    case = {**CAUSAL, "causal": False, "dtype": "bfloat16", "Nq": 16, "Nk": 3000}
    honest = _judge(ATTENTION, case, lambda call, truth: truth.to(torch.bfloat16))
    off = _judge(ATTENTION, case, lambda call, truth: (
        truth + 6 * 2.0**-7 * float(truth.abs().max())).to(torch.bfloat16))
    assert honest.passed, honest.message
    assert not off.passed and off.rule == "tolerance"
    assert off.max_abs_err < 2.0**-7  # within one ulp of 1.0


@pytest.mark.parametrize(("task", "case"), LOW_PRECISION, ids=IDS)
def test_a_result_three_bits_short_of_its_dtype_fails(task: Task, case: Case) -> None:
    dtype = getattr(torch, case["dtype"])
    verdict = _judge(task, case, lambda call, truth: _fewer_bits(truth, dtype, 3))
    assert not verdict.passed
    assert verdict.rule == "tolerance"
    assert verdict.max_abs_err > verdict.tolerance
    assert 0 < verdict.n_exceeding <= verdict.n_total


def test_a_float32_failure_says_what_it_was_held_to_and_how_to_meet_it() -> None:
    case = {**CAUSAL, "dtype": "float32", "Nq": 40, "Nk": 40}
    short = _judge(ATTENTION, case, lambda call, truth: (
        truth.float().view(torch.int32) & ~0xFFFF).view(torch.float32))
    assert short.rule == "tolerance" and "of a tf32 (rounded to nearest) reference" in \
        short.message and 'input_precision="ieee"' in short.message, short.message
    half = _judge(ATTENTION, {**case, "dtype": "float16"},
                  lambda call, truth: _fewer_bits(truth, torch.float16, 3))
    assert half.rule == "tolerance" and "ieee" not in half.message, half.message


def _attention_without_rescale(call: Call, block: int = 32) -> torch.Tensor:
    """Online softmax that forgets to rescale what it accumulated when the row max grows."""
    q, k, v = (t.double() for t in call.args)
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    acc = torch.zeros_like(q)
    denom = torch.zeros(q.shape[:-1] + (1,), dtype=q.dtype)
    row_max = torch.full_like(denom, -math.inf)
    for start in range(0, s.shape[-1], block):
        tile = s[..., start:start + block]
        row_max = torch.maximum(row_max, tile.amax(-1, keepdim=True))
        p = torch.exp(tile - row_max)
        denom = denom + p.sum(-1, keepdim=True)     # the bug: no denom * exp(old - new)
        acc = acc + p @ v[..., start:start + block, :]
    return (acc / denom).to(call.args[0].dtype)


def test_an_online_softmax_without_rescaling_fails() -> None:
    case = {**CAUSAL, "causal": False, "dtype": "float16", "Nq": 40, "Nk": 200, "spread": 4.0}
    verdict = _judge(ATTENTION, case, lambda call, truth: _attention_without_rescale(call))
    assert verdict.rule == "tolerance" and not verdict.passed
    assert verdict.n_exceeding > verdict.n_total // 10


def _rmsnorm_summing_in_fp16(call: Call) -> torch.Tensor:
    """A precision shortcut: the sum of squares accumulated element by element in float16."""
    x, weight = call.args
    total = torch.zeros(x.shape[:-1], dtype=torch.float16)
    for j in range(x.shape[-1]):
        total = total + x[..., j] * x[..., j]
    ms = total.float() / x.shape[-1]
    return (x.float() * torch.rsqrt(ms + 1e-6)[..., None] * weight.float()).to(x.dtype)


def test_a_precision_shortcut_that_survives_small_inputs_fails_on_large_ones() -> None:
    def shortcut(call: Call, truth: torch.Tensor) -> torch.Tensor:
        return _rmsnorm_summing_in_fp16(call)

    small = _judge(RMSNORM, {**ROWS, "shape": [4, 8]}, shortcut)
    large = _judge(RMSNORM, {**ROWS, "shape": [4, 4096]}, shortcut)
    assert small.passed, small.message
    assert not large.passed and large.rule == "tolerance"


def test_planted_errors_are_counted_and_the_worst_is_located() -> None:
    case = {**CAUSAL, "dtype": "float16", "Nq": 20, "Nk": 20}
    where = (0, 1, 7, 5)

    def planted(call: Call, truth: torch.Tensor) -> torch.Tensor:
        out = truth.to(torch.float16)
        out[0, 0, 3, 3] += 0.5
        out[where] += 2.0
        return out

    verdict = _judge(ATTENTION, case, planted)
    assert not verdict.passed and verdict.rule == "tolerance"
    assert verdict.n_exceeding == 2 and verdict.n_total == 2 * 20 * 64
    assert verdict.worst_index == dict(zip(ATTENTION.output_dims, where))
    assert verdict.max_abs_err == pytest.approx(2.0, abs=0.01)
    assert verdict.worst_value - verdict.worst_expected == pytest.approx(2.0, abs=0.01)
    assert verdict.n_nan == 0 and verdict.n_inf == 0
    assert verdict.rel_err is not None and verdict.rel_err > 0


def test_precision_is_each_element_s_error_over_the_tolerance() -> None:
    call = RMSNORM.make_inputs({**ROWS, "shape": [8, 64]}, "cpu")
    truth = RMSNORM.reference(call, torch.float64)
    ref = _ref(truth, RMSNORM.reference(call, torch.float16))
    right = truth.half()
    wrong = right.clone()
    wrong[3, 5] += 1.0
    verdicts = [check_output(RMSNORM, call, out, ref) for out in (right, wrong)]
    ratios = [(out.double() - truth).abs() / verdicts[0].tolerance for out in (right, wrong)]
    for verdict, ratio in zip(verdicts, ratios):
        stats = precision([verdict])
        assert stats == pytest.approx({"max": float(ratio.max()), "elements": ratio.numel(),
                                       "rms": float(ratio.square().mean().sqrt())})
        assert (stats["max"] <= 1) is verdict.passed  # the ratio the check holds at 1
    both = torch.cat(ratios)
    assert precision(verdicts) == pytest.approx({"max": float(both.max()), "elements": both.numel(),
                                                 "rms": float(both.square().mean().sqrt())})
    assert precision([]) is None


def test_nan_and_inf_are_counted_as_wrong() -> None:
    def poisoned(call: Call, truth: torch.Tensor) -> torch.Tensor:
        out = truth.to(torch.float16)
        out[0, 0, 0, :3] = float("nan")
        out[0, 1, 2, :2] = float("inf")
        return out

    verdict = _judge(ATTENTION, {**CAUSAL, "dtype": "float16", "Nq": 8, "Nk": 8}, poisoned)
    assert not verdict.passed and verdict.rule == "tolerance"
    assert (verdict.n_nan, verdict.n_inf) == (3, 2)
    assert verdict.n_exceeding == 5
    assert verdict.max_abs_err == math.inf


def test_a_nan_alone_fails_even_where_the_tolerance_is_infinite() -> None:
    call = RMSNORM.make_inputs({**ROWS, "shape": [2, 16]}, "cpu")
    truth = RMSNORM.reference(call, torch.float64)
    out = truth.to(torch.float16)
    out[1, 4] = float("nan")
    verdict = check_output(RMSNORM, call, out, Reference(truth, math.inf, 1.0))
    assert not verdict.passed and verdict.n_nan == 1


# Each wrong kind of output, and the rule that names it.
WRONG_OUTPUTS = {
    "output-type": [lambda out: out.numpy(), lambda out: torch.nn.Parameter(out.float()),
                    lambda out: [out]],
    "output-shape": [lambda out: out[..., :-1], lambda out: out.reshape(-1)],
    "output-dtype": [lambda out: out.float()],
    "output-device": [lambda out: out.to("meta")],
    "output-layout": [lambda out: out.to_sparse()],
}


@pytest.mark.parametrize(("rule", "index"), [(rule, i) for rule, makers in WRONG_OUTPUTS.items()
                                             for i in range(len(makers))])
def test_an_output_of_the_wrong_kind_fails_with_its_rule(rule: str, index: int) -> None:
    verdict = _judge(ATTENTION, {**CAUSAL, "dtype": "float16", "Nq": 4, "Nk": 4},
                     lambda call, truth: WRONG_OUTPUTS[rule][index](truth.to(torch.float16)))
    assert not verdict.passed
    assert verdict.rule == rule, verdict.message


def test_a_numpy_array_equal_to_the_truth_is_still_not_a_tensor() -> None:
    verdict = _judge(RMSNORM, {**ROWS, "dtype": "float32", "shape": [2, 8]},
                     lambda call, truth: np.asarray(truth.float()))
    assert verdict.rule == "output-type" and "numpy.ndarray" in verdict.message


# A plain-torch candidate whose sm_scale picks a behaviour: honest, mutating, or untyped.
PROBE = '''
import torch

def attention(q, k, v, causal=False, sm_scale=None):
    if sm_scale == 0.25:
        return [q.clone()]
    g = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(g, 1).double()
    vv = v.repeat_interleave(g, 1).double()
    s = q.double() @ kk.transpose(-1, -2) * (sm_scale or q.shape[-1] ** -0.5)
    if causal:
        nq, nk = q.shape[2], k.shape[2]
        s = s.masked_fill(torch.ones(nq, nk, dtype=torch.bool).tril(nk - nq).logical_not(),
                          float("-inf"))
    out = (torch.softmax(s, -1).nan_to_num(0.0) @ vv).to(q.dtype)
    if sm_scale == 0.5:
        k.mul_(2.0)
    return out
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    path = Path(tmp_path_factory.mktemp("checker")) / "probe.py"
    path.write_text(PROBE)
    box = Sandbox(path, "attention", SandboxSettings(cuda=False, timeout_s=120,
                                                     memory_limit_bytes=0))
    yield box
    box.close()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_check_case_passes_an_honest_candidate(probe: Sandbox, dtype: str) -> None:
    case = {**CAUSAL, "dtype": dtype, "Nq": 33, "Nk": 47, "Hq": 4, "Hkv": 2, "layout": "bnhd"}
    verdict = check_case(ATTENTION, probe, case, "cpu")
    assert verdict.passed, verdict.message
    assert verdict.n_total == 4 * 33 * 64


def test_check_case_catches_a_mutated_input(probe: Sandbox) -> None:
    case = {**CAUSAL, "dtype": "float16", "Nq": 9, "Nk": 9, "sm_scale": 0.5}
    verdict = check_case(ATTENTION, probe, case, "cpu")
    assert verdict.rule == "input-mutated" and "input 1" in verdict.message


def test_check_case_refuses_what_is_not_a_tensor(probe: Sandbox) -> None:
    case = {**CAUSAL, "dtype": "float16", "Nq": 9, "Nk": 9, "sm_scale": 0.25}
    verdict = check_case(ATTENTION, probe, case, "cpu")
    assert verdict.rule == "output-type" and "builtins.list" in verdict.message


def test_every_timed_round_sees_inputs_no_earlier_round_saw(tmp_path: Path) -> None:
    # A candidate that keeps what it computed from q and k alone (scores, probabilities)
    # would reuse it whenever q and k come back: they never do.
    path = tmp_path / "probe.py"
    record = ("    import os\n"
              "    with open(os.path.join(os.getcwd(), 'seen.txt'), 'a') as f:\n"
              "        f.write(repr((q.sum().item(), k.sum().item())) + '\\n')\n")
    path.write_text(PROBE.replace("    if sm_scale == 0.25:", record + "    if sm_scale == 0.25:"))
    box = Sandbox(path, "attention", SandboxSettings(cuda=False, timeout_s=120,
                                                     memory_limit_bytes=0))
    try:
        verdict, times = check_timed(ATTENTION, box, {**CAUSAL, "dtype": "float16", "Nq": 9,
                                                      "Nk": 9}, "cpu", floor_s=0.0,
                                     rng=random.Random(5))
        calls = (box.scratch / "seen.txt").read_text().splitlines()
    finally:
        box.close()
    assert verdict.passed, verdict.message
    assert len(calls) > len(times) and len(set(calls)) == len(calls)


def test_locating_the_worst_element_imports_no_sympy() -> None:
    """``torch.unravel_index`` imports sympy (seconds, in every evaluation's first check)."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from avo_harness.judge.checker import Reference, check_output\n"
        "from avo_harness.tasks import get_task\n"
        "task = get_task('rmsnorm')\n"
        "call = task.make_inputs({'shape': [4, 8, 16], 'dtype': 'float16', 'spread': 1.0,"
        " 'layout': 'contiguous', 'eps': None, 'seed': 1}, 'cpu')\n"
        "truth = task.reference(call, torch.float64)\n"
        "out = truth.half(); out[2, 5, 7] += 1.0\n"
        "v = check_output(task, call, out, Reference(truth, 1e-3, 1.0))\n"
        "print(v.worst_index, 'sympy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parent.parent)
    where, imported = done.stdout.rsplit(" ", 1)
    assert imported.strip() == "False"
    assert list(eval(where).values()) == [2, 5, 7]
