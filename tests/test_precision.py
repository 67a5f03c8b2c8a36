"""No drift in precision: the rule on report entries, and on candidates the harness ran."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from avo_harness.evolve.precision import regression
from avo_harness.tasks import get_task


def _entry(**rms: float) -> dict[str, Any]:
    """A report entry whose configurations have these RMS errors over the tolerance."""
    configs = {name: {"max": 4 * value, "rms": value, "elements": 1024}
               for name, value in rms.items()}
    return {"precision": {"configs": configs}}


def test_a_candidate_within_the_factor_of_the_seeds_passes() -> None:
    seeds = [_entry(a=0.01, b=0.02)]
    assert regression(_entry(a=0.01, b=0.02), seeds, 2.0) is None
    assert regression(_entry(a=0.02, b=0.04), seeds, 2.0) is None  # at the bar exactly


def test_a_candidate_beyond_the_factor_fails_with_its_numbers() -> None:
    reason = regression(_entry(a=0.05, b=0.03), [_entry(a=0.01, b=0.02)], 2.0)
    assert reason is not None and "\n" not in reason
    assert reason.startswith("precision-regression:")
    # b is within its bar: not named.
    assert reason.endswith("on 1 of 2 configurations: a 0.05 > 2 x 0.01"), reason


def test_the_bar_is_the_loosest_seed_of_each_configuration() -> None:
    seeds = [_entry(a=0.01, b=0.05), _entry(a=0.03, b=0.01)]
    assert regression(_entry(a=0.06, b=0.1), seeds, 2.0) is None
    reason = regression(_entry(a=0.07, b=0.1), seeds, 2.0)
    assert reason is not None and "a 0.07 > 2 x 0.03" in reason


def test_what_has_no_data_is_not_compared() -> None:
    worse = _entry(a=1.0)
    assert regression({"correctness": {"outcome": "passed"}}, [_entry(a=0.01)], 2.0) is None
    assert regression(worse, [{"benchmarks": {}}], 2.0) is None  # a seed's old report
    assert regression(worse, [], 2.0) is None
    assert regression(worse, [_entry(b=0.01)], 2.0) is None  # no seed timed a
    assert regression(worse, [{"precision": {"configs": {"a": {"max": 1.0}}}}], 2.0) is None
    assert regression(worse, [_entry(b=0.01), _entry(a=0.01)], 2.0) is not None


def test_factor_zero_turns_the_rule_off() -> None:
    assert regression(_entry(a=1.0), [_entry(a=0.01)], 0.0) is None


#: The seed's arithmetic: the sum of squares in float32, the output rounded once.
FLOAT32_ACCUMULATOR = '''
import torch

def rmsnorm(x, weight, eps=1e-6):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)
'''

#: The drift to catch: the seed's arithmetic with its result scaled by 1 + 2^-11 (half a
#: float16 ulp) before the rounding, as a float16 accumulator's bias would. It passes the
#: tolerance, and its RMS error is several times the seed's. (An accumulator rounded to
#: float16 after each of 128 blocks came within 2% of the tolerance, and once past it.)
DRIFTED = '''
import torch

def rmsnorm(x, weight, eps=1e-6):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return (y * (1 + 2 ** -11)).to(x.dtype)
'''


def test_a_drift_within_the_tolerance_is_caught_against_a_float32_seed(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any]) -> None:
    write_candidate("seed", FLOAT32_ACCUMULATOR, task="rmsnorm")
    write_candidate("drifted", DRIFTED, task="rmsnorm")
    run = avo_run(examples=0)
    seed, drifted = (run.candidate(name, task="rmsnorm") for name in ("seed", "drifted"))
    for entry in (seed, drifted):  # both right: the tolerance alone lets the drift through
        assert {b["outcome"] for b in entry["benchmarks"].values()} == {"passed"}, run.text
    fp16 = next(c.name for c in get_task("rmsnorm").bench_configs(cuda=False)
                if c.case["dtype"] == "float16")
    ours, theirs = (e["precision"]["configs"][fp16]["rms"] for e in (drifted, seed))
    assert ours > 2 * theirs, (ours, theirs)
    reason = regression(drifted, [seed], 2.0)
    assert reason is not None and f"{fp16} {ours:.4g} > 2 x {theirs:.4g}" in reason, reason
    assert regression(seed, [seed], 2.0) is None
