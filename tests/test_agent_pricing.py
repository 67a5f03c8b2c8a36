"""Prices per model, what a call costs, and the worst case a budget reserves."""
from __future__ import annotations

import pytest

from avo_harness.agent.pricing import DEAREST, PRICES, Usage, price_of, worst_case

OPUS = PRICES["claude-opus-5-5"]


def test_every_kind_of_token_is_billed_at_its_own_rate() -> None:
    usage = Usage(input=1_000, cache_write_5m=2_000, cache_write_1h=3_000, cache_read=10_000,
                  output=500)
    assert usage.prompt == 16_000
    assert usage.cost(OPUS) == pytest.approx(
        (1_000 * 4 + 2_000 * 5 + 3_000 * 8 + 10_000 * 0.2 + 500 * 20) / 1e6)


def test_cache_writes_are_split_by_ttl_when_the_api_says_how() -> None:
    split = Usage.from_api({"input_tokens": 5, "cache_creation_input_tokens": 100,
                            "cache_creation": {"ephemeral_1h_input_tokens": 40,
                                               "ephemeral_5m_input_tokens": 60},
                            "cache_read_input_tokens": 7, "output_tokens": 9})
    assert split == Usage(input=5, cache_write_5m=60, cache_write_1h=40, cache_read=7, output=9)
    plain = Usage.from_api({"input_tokens": 5, "cache_creation_input_tokens": 100,
                            "cache_read_input_tokens": None, "output_tokens": 9})
    assert plain == Usage(input=5, cache_write_5m=100, output=9)
    assert split + plain == Usage(10, 160, 40, 7, 18)


def test_long_prompts_switch_every_rate_of_a_banded_model() -> None:
    haiku = PRICES["claude-haiku-5-5"]
    short = Usage(input=100_000, output=1_000)
    long = Usage(input=100_001, output=1_000)
    assert short.cost(haiku) == pytest.approx((100_000 * 0.10 + 1_000 * 0.50) / 1e6)
    assert long.cost(haiku) == pytest.approx((100_001 * 0.50 + 1_000 * 2.50) / 1e6)


def test_dated_ids_resolve_and_unknown_models_are_priced_dearest() -> None:
    assert price_of("claude-haiku-4-5-20251001") == (PRICES["claude-haiku-4-5"], True)
    assert price_of("claude-opus-5-5") == (OPUS, True)
    price, known = price_of("claude-someday-9")
    assert not known and price is DEAREST
    assert DEAREST.output == max(p.output for p in PRICES.values())
    assert DEAREST.cache_read == max(p.cache_read for p in PRICES.values())


@pytest.mark.parametrize("model", sorted(PRICES))
def test_the_worst_case_bounds_any_billing_of_the_same_call(model: str) -> None:
    price = PRICES[model]
    stable, other, output = 4_000, 30_000, 2_000
    worst = worst_case(price, stable, other, output)
    for usage in (Usage(input=stable + other, output=output),
                  Usage(cache_write_1h=stable, cache_write_5m=other, output=output),
                  Usage(cache_read=stable, cache_write_5m=other, output=output),
                  Usage(cache_write_1h=stable, input=other, output=output)):
        assert usage.cost(price) <= worst + 1e-12
