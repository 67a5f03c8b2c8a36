"""What a Claude model charges, and what one call cost.

List prices in US dollars per million tokens, from Anthropic's pricing page
(https://platform.claude.com/docs/en/about-claude/pricing) as of November 2026; they change,
so check them. A model missing here is priced at the dearest rate of every kind, so that a
budget errs towards stopping early rather than late.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind."""

    input: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    output: float
    # Some models bill every token of a request whose prompt is longer than this at `long`.
    long_prompt: int | None = None
    long: Price | None = None

    def band(self, prompt_tokens: int) -> Price:
        """The rates that apply to a request with this many prompt tokens."""
        if self.long is not None and self.long_prompt is not None \
                and prompt_tokens > self.long_prompt:
            return self.long
        return self


_OPUS_4 = Price(5.0, 6.25, 10.0, 0.50, 25.0)
_SONNET_4 = Price(3.0, 3.75, 6.0, 0.30, 15.0)
_FABLE_5 = Price(10.0, 12.50, 20.0, 1.00, 50.0)
_FABLE_5_1 = Price(10.0, 12.50, 20.0, 0.25, 50.0)

PRICES: dict[str, Price] = {
    "claude-fable-5-2": Price(8.0, 10.0, 16.0, 0.20, 40.0),
    "claude-fable-5-1": _FABLE_5_1,
    "claude-mythos-5-1": _FABLE_5_1,
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    "claude-opus-5-5": Price(4.0, 5.0, 8.0, 0.20, 20.0),
    "claude-opus-5": Price(5.0, 6.25, 10.0, 0.50, 25.0),
    "claude-opus-4-8": _OPUS_4,
    "claude-opus-4-7": _OPUS_4,
    "claude-opus-4-6": _OPUS_4,
    "claude-opus-4-5": _OPUS_4,
    "claude-sonnet-5-5": Price(2.0, 2.50, 4.0, 0.10, 10.0),
    "claude-sonnet-5": Price(2.0, 2.50, 4.0, 0.20, 10.0),
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-haiku-5-5": Price(0.10, 0.125, 0.20, 0.01, 0.50, long_prompt=100_000,
                              long=Price(0.50, 0.625, 1.00, 0.05, 2.50)),
    "claude-haiku-4-5": Price(1.0, 1.25, 2.0, 0.10, 5.0),
}
DEAREST = Price(*(max(getattr(p, f.name) for p in PRICES.values())
                  for f in fields(Price) if f.name not in ("long_prompt", "long")))


def price_of(model: str) -> tuple[Price, bool]:
    """The model's price and whether it is known (a dated id such as
    ``claude-haiku-4-5-20251001`` is its alias's); unknown models get :data:`DEAREST`."""
    for name in (model, re.sub(r"-\d{8}$", "", model)):
        if name in PRICES:
            return PRICES[name], True
    return DEAREST, False


@dataclass(frozen=True)
class Usage:
    """The tokens of one call (or a sum of calls), by how they are billed."""

    input: int = 0            # prompt tokens read neither from nor into the cache
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output: int = 0

    @property
    def prompt(self) -> int:
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Usage)))

    def cost(self, price: Price) -> float:
        """Dollars of one call (the long-prompt band is decided per call)."""
        p = price.band(self.prompt)
        return (self.input * p.input + self.cache_write_5m * p.cache_write_5m
                + self.cache_write_1h * p.cache_write_1h + self.cache_read * p.cache_read
                + self.output * p.output) / 1e6

    @classmethod
    def from_api(cls, usage: dict[str, Any]) -> Usage:
        """From a response's ``usage``; cache writes without a TTL breakdown count as 5 m."""
        written = usage.get("cache_creation_input_tokens") or 0
        by_ttl = usage.get("cache_creation") or {}
        one_hour = by_ttl.get("ephemeral_1h_input_tokens") or 0
        return cls(input=usage.get("input_tokens") or 0, cache_write_5m=written - one_hour,
                   cache_write_1h=one_hour, cache_read=usage.get("cache_read_input_tokens") or 0,
                   output=usage.get("output_tokens") or 0)


def worst_case(price: Price, stable_tokens: int, other_tokens: int, output: int) -> float:
    """The most a call can cost: its stable prefix written to the 1 h cache, the rest of
    the prompt to the 5 m cache (both dearer than plain input), and ``output`` tokens."""
    p = price.band(stable_tokens + other_tokens)
    return (stable_tokens * max(p.input, p.cache_write_1h)
            + other_tokens * max(p.input, p.cache_write_5m) + output * p.output) / 1e6
