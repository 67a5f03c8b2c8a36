"""A step's meter: no call is made unless its worst case fits every limit."""
from __future__ import annotations

import pytest

from avo_harness.agent.budget import MAX_OUTPUT, MIN_OUTPUT, Limits, Meter, OutOfBudget
from avo_harness.agent.pricing import PRICES, Usage, worst_case

OPUS = PRICES["claude-opus-5-5"]
ROOMY = Limits(turns=10, tokens=10**9, usd=100.0, seconds=3600.0)


def test_output_is_capped_to_what_the_step_can_pay() -> None:
    meter = Meter(OPUS, Limits(turns=10, tokens=10**9, usd=1.0, seconds=3600.0))
    assert meter.allowance(1_000, 1_000) == MAX_OUTPUT
    assert meter.add(Usage(input=1_000, output=45_000)) == pytest.approx(0.904)
    left = 1.0 - 0.904 - worst_case(OPUS, 1_000, 1_000, 0)
    assert meter.allowance(1_000, 1_000) == int(left / (OPUS.output / 1e6))
    assert MIN_OUTPUT <= meter.allowance(1_000, 1_000) < MAX_OUTPUT
    assert meter.spent() == {"tokens_in": 1_000, "tokens_out": 45_000,
                             "cost_usd": pytest.approx(0.904)}


def test_the_run_budget_is_reported_before_the_step_limits() -> None:
    meter = Meter(OPUS, Limits(turns=1, tokens=10**9, usd=0.001, seconds=3600.0,
                               run_usd=0.01))
    meter.add(Usage(input=1_000))
    with pytest.raises(OutOfBudget, match=r"run cost budget: \$0\.0060 left") as info:
        meter.allowance(1_000, 1_000)
    assert info.value.run


@pytest.mark.parametrize("limits, message", [
    (Limits(turns=1, tokens=10**9, usd=100.0, seconds=3600.0), "turn limit reached"),
    (Limits(turns=10, tokens=3_000, usd=100.0, seconds=3600.0), "step token budget"),
    (Limits(turns=10, tokens=10**9, usd=0.01, seconds=3600.0), "step cost budget"),
])
def test_step_limits_end_the_step_not_the_run(limits: Limits, message: str) -> None:
    meter = Meter(OPUS, limits)
    meter.add(Usage(input=1_000, output=100))
    with pytest.raises(OutOfBudget, match=message) as info:
        meter.allowance(500, 500)
    assert not info.value.run


def test_run_tokens_and_step_time() -> None:
    meter = Meter(OPUS, Limits(turns=10, tokens=10**9, usd=100.0, seconds=3600.0,
                               run_tokens=5_000))
    meter.add(Usage(input=2_000, output=500))
    with pytest.raises(OutOfBudget, match="run token budget: 2,500 tokens left"):
        meter.allowance(1_000, 1_000)
    now = [0.0]
    timed = Meter(OPUS, ROOMY, clock=lambda: now[0])
    assert timed.deadline == 3600.0
    now[0] = 3600.0
    with pytest.raises(OutOfBudget, match="step time limit"):
        timed.allowance(10, 10)


def test_a_review_is_paid_for_but_is_not_a_turn() -> None:
    meter = Meter(OPUS, Limits(turns=1, tokens=10**9, usd=100.0, seconds=3600.0))
    meter.add(Usage(input=100), turn=False)
    assert meter.allowance(10, 10) == MAX_OUTPUT
    assert meter.tokens_in == 100 and meter.cost_usd > 0
