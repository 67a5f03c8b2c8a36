"""What one agent step may still spend: calls, tokens, dollars and time of its own, and what
the run's budgets leave.

A call is made only if its worst case fits every limit (its output is capped to fit), so no
limit is ever passed; when a call cannot fit, :class:`OutOfBudget` says which limit ran out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from .pricing import Price, Usage, worst_case

#: Output tokens asked of one call; more would need streaming (the SDK refuses a non-streaming
#: call that could outlast ten minutes).
MAX_OUTPUT = 16_000
#: A call that cannot afford this much output is not worth making.
MIN_OUTPUT = 1_024


@dataclass(frozen=True)
class Limits:
    """One step's own limits, and what the run's budgets leave (None: no limit)."""

    turns: int
    tokens: int
    usd: float
    seconds: float
    run_usd: float | None = None
    run_tokens: int | None = None


class OutOfBudget(Exception):
    """No further call fits; ``run`` tells a run budget (the run ends) from a step limit."""

    def __init__(self, message: str, *, run: bool) -> None:
        super().__init__(message)
        self.run = run


class Meter:
    """What this step has spent, and what its next call may spend."""

    def __init__(self, price: Price, limits: Limits,
                 clock: Callable[[], float] = time.monotonic,
                 on_spend: Callable[[int, int, float], None] | None = None) -> None:
        self.price = price
        self.limits = limits
        self.clock = clock
        #: Told of every call's tokens (prompt, output) and dollars as it is counted, so
        #: the lineage holds them even if the process dies before the step ends.
        self.on_spend = on_spend
        self.started = clock()
        self.usage = Usage()
        self.cost_usd = 0.0
        self.turns = 0

    @property
    def tokens_in(self) -> int:
        return self.usage.prompt

    @property
    def tokens_out(self) -> int:
        return self.usage.output

    @property
    def deadline(self) -> float:
        return self.started + self.limits.seconds

    def spent(self) -> dict[str, Any]:
        """As the lineage keeps it (the keyword arguments of Proposal and StepAborted)."""
        return {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "cost_usd": self.cost_usd}

    def add(self, usage: Usage, turn: bool = True) -> float:
        """Count one call (a supervisor's review is not one of the agent's turns); returns
        its cost."""
        cost = usage.cost(self.price)
        self.usage += usage
        self.cost_usd += cost
        self.turns += turn
        if self.on_spend is not None:
            self.on_spend(usage.prompt, usage.output, cost)
        return cost

    def allowance(self, stable_tokens: int, other_tokens: int,
                  wanted: int = MAX_OUTPUT) -> int:
        """Output tokens the next call may ask for, given an estimate of its prompt (a
        stable, cached prefix and the rest); raises OutOfBudget when it cannot be made.
        The run's budgets are checked first: when they are spent, the run ends."""
        lim = self.limits
        output = self._fit(wanted, stable_tokens, other_tokens, "run", lim.run_usd,
                           lim.run_tokens)
        elapsed = self.clock() - self.started
        if self.turns >= lim.turns:
            raise OutOfBudget(f"turn limit reached ({lim.turns} calls)", run=False)
        if elapsed >= lim.seconds:
            raise OutOfBudget(f"step time limit reached ({elapsed:,.0f} s)", run=False)
        return self._fit(output, stable_tokens, other_tokens, "step", lim.usd, lim.tokens)

    def _fit(self, output: int, stable_tokens: int, other_tokens: int, scope: str,
             usd: float | None, tokens: int | None) -> int:
        """``output`` reduced to what ``usd`` and ``tokens`` (None: no limit) leave."""
        run = scope == "run"
        prompt = stable_tokens + other_tokens
        if tokens is not None:
            left = tokens - self.tokens_in - self.tokens_out
            output = min(output, left - prompt)
            if output < MIN_OUTPUT:
                raise OutOfBudget(f"{scope} token budget: {max(0, left):,} tokens left cannot "
                                  f"hold another call (its prompt is about {prompt:,})", run=run)
        if usd is not None:
            left_usd = usd - self.cost_usd
            per_token = self.price.band(prompt).output / 1e6
            fixed = worst_case(self.price, stable_tokens, other_tokens, 0)
            output = min(output, int((left_usd - fixed) / per_token))
            if output < MIN_OUTPUT:
                need = worst_case(self.price, stable_tokens, other_tokens, MIN_OUTPUT)
                raise OutOfBudget(f"{scope} cost budget: ${max(0.0, left_usd):.4f} left cannot "
                                  f"pay for another call (its worst case is ${need:.4f})",
                                  run=run)
        return output
