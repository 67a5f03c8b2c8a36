"""The agent's options (``--avo-agent-*``, declared with the others in ``options.py``),
read and validated once, when the operator is built."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from ..options import duration, parsed, raw


@dataclass(frozen=True)
class AgentSettings:
    model: str
    turns: int
    step_tokens: int
    step_usd: float
    step_time_s: float
    stagnation: int


def read_agent_settings(config: pytest.Config) -> AgentSettings:
    return AgentSettings(
        model=str(raw(config, "agent_model")),
        turns=parsed(config, "agent_turns", int, lambda v: v >= 1, "an integer >= 1"),
        step_tokens=parsed(config, "agent_step_tokens", int, lambda v: v > 0,
                           "an integer > 0"),
        step_usd=parsed(config, "agent_step_usd", float, lambda v: v > 0,
                        "a number of dollars > 0"),
        step_time_s=parsed(config, "agent_step_time", duration, lambda v: v > 0,
                           "a duration > 0 such as 1800, 30m or 1h"),
        stagnation=parsed(config, "agent_stagnation", int, lambda v: v >= 0,
                          "an integer >= 0"),
    )
