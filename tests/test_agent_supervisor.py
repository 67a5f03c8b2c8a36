"""The supervisor: stagnation and cycling found in the lineage, a review by the model over real
HTTP, a directive that lasts until an improvement, and a pause between interventions."""
from __future__ import annotations

from typing import Any

import pytest

from avo_harness.agent.budget import Limits, Meter
from avo_harness.agent.client import MessagesClient
from avo_harness.agent.fake_server import FakeMessagesAPI
from avo_harness.agent.pricing import PRICES
from avo_harness.agent.supervisor import Supervisor, diagnose, steps_without_improvement
from avo_harness.evolve.lineage import Record, source_hash

_WORDS = ("zero", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
BASE = "import torch\n\ndef attention(q, k, v, causal=False, sm_scale=None):\n    return q\n"


def step(id: int, *, geomean: float | None = None, committed: bool = False, rationale: str = "",
         source: str | None = None, operator: str = "anthropic") -> Record:
    source = BASE + f"# {id}\n" if source is None else source
    return Record(id=id, run_id=1, generation=id - 1, name=f"g{id}", parents=[1],
                  operator=operator, rationale=rationale or f"variant {_WORDS[id]}",
                  source=source, source_hash=source_hash(source),
                  status="passed" if geomean else "failed", committed=committed, reason=None,
                  scores=None, geomean=geomean, report=None, operator_s=0.0, eval_s=0.0)


SEED = step(1, geomean=1.0, committed=True, operator="seed", source=BASE)


def test_stagnation_counts_steps_since_the_last_improvement() -> None:
    records = [SEED, step(2, geomean=1.2, committed=True), step(3),
               step(4, geomean=1.2, committed=True), step(5, geomean=1.1)]
    # A tie is committed but is no improvement; a failure and a slower pass neither.
    assert steps_without_improvement(records) == 3
    found = diagnose(records, "anthropic", 3)
    assert found is not None and found.trigger == "stagnation"
    assert found.why == "3 steps without a committed improvement (best geomean 1.2)"
    assert diagnose(records, "anthropic", 4) is None
    assert diagnose(records, "anthropic", 0) is None
    assert steps_without_improvement([SEED]) == 0


@pytest.mark.parametrize("latest, why", [
    (step(4, source=BASE + "x = 1\ny = 2\n", rationale="tile the keys by 128"),
     "the same change"),
    (step(4, rationale="use a persistent grid with heavy causal tiles first"),
     "nearly the same rationale"),
])
def test_cycling_is_a_repeated_change_or_idea(latest: Record, why: str) -> None:
    earlier = step(2, source=BASE + "y = 2\nx = 1\n",  # the same lines, another order
                   rationale="persistent grid with heavy causal tiles first, using the SMs")
    records = [SEED, step(2, geomean=1.1, committed=True), earlier, latest]
    records[2] = Record(**{**earlier.__dict__, "id": 3, "name": "g3"})
    found = diagnose(records, "anthropic", 3)
    assert found is not None and found.trigger == "cycling"
    assert found.why == f"g4 repeats g3 ({why})"
    assert diagnose([*records[:3], step(4, rationale="split the diagonal band")],
                    "anthropic", 3) is None


def test_review_directive_pause_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    directive = "Stop tuning block sizes; try TMA loads for K and V."
    script = [{"reply": [{"type": "text", "text": directive}],
               "usage": {"input_tokens": 1_000, "output_tokens": 100},
               "expect": "Trigger: 1 steps without a committed improvement"},
              {"reply": [{"type": "text", "text": "Second directive."}]}]
    with FakeMessagesAPI(script) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        supervisor = Supervisor(MessagesClient("claude-opus-5-5"), "anthropic", patience=1)
        meter = Meter(PRICES["claude-opus-5-5"], Limits(1, 10**6, 5.0, 60.0))
        records = [SEED, step(2, rationale="smaller blocks")]
        event = supervisor.steer(records, meter)
        assert event is not None and event.kind == "supervisor"
        assert event.summary == "stagnation: 1 steps without a committed improvement (best " \
                                "geomean 1)"
        detail: dict[str, Any] = event.detail
        assert detail["directive"] == directive == supervisor.directive
        assert detail["cost_usd"] == pytest.approx(0.006) == meter.cost_usd
        assert meter.turns == 0  # the review is not one of the agent's turns
        request = api.requests[0]
        assert "tools" not in request and "smaller blocks" in str(request["messages"])
        # Still stagnant one step later: the supervisor waits its patience before the next.
        assert supervisor.steer(records, meter) is None and len(api.requests) == 1
        records.append(step(3))
        assert supervisor.steer(records, meter) is not None
        assert supervisor.directive == "Second directive." and len(api.requests) == 2
        assert directive in str(api.requests[1]["messages"])  # it sees its previous one
        # An improvement ends the directive.
        records.append(step(4, geomean=1.5, committed=True))
        assert supervisor.steer(records, meter) is None and supervisor.directive is None
