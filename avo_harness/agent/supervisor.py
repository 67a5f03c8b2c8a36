"""The supervisor: notices when the search stalls or repeats itself, has the model review
the trajectory, and steers the next steps with the review's directive.

Stagnation is K agent steps without a committed improvement; cycling is a step that repeats
an earlier one (the same source, the same lines added, or nearly the same rationale) among
the last 2K. Detection is plain code over the lineage; the review is one model call without
tools. The directive goes into the first message of every following step until a committed
improvement, and each intervention is returned as an event for the lineage. After an
intervention the supervisor waits K more steps before the next one.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..evolve.lineage import Record, best_committed
from ..evolve.operators import Event
from .budget import Meter
from .client import MessagesClient
from .prompts import SUPERVISOR, trajectory

_SAME_RATIONALE = 0.6
_SAME_CHANGE = 0.8
_REVIEW_TOKENS = 2_000


@dataclass(frozen=True)
class Diagnosis:
    trigger: str  # "stagnation" or "cycling"
    why: str


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9_]+", text.lower()) if len(w) > 3}


def _added(record: Record, by_id: dict[int, Record]) -> set[str]:
    parent = by_id.get(record.parents[0]) if record.parents else None
    if parent is None:
        return set()
    return {line[1:].strip() for line in difflib.unified_diff(
        parent.source.splitlines(), record.source.splitlines(), lineterm="", n=0)
        if line.startswith("+") and not line.startswith("+++") and line[1:].strip()}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def steps_without_improvement(records: list[Record]) -> int:
    """Operator steps since the last committed candidate that raised the best geomean
    (a starting population is not a step)."""
    best, since = 0.0, 0
    for r in records:
        improved = r.committed and (r.geomean or 0.0) > best
        best = max(best, r.geomean or 0.0) if r.committed else best
        if not r.starting:
            since = 0 if improved else since + 1
    return since


def diagnose(records: list[Record], operator: str, patience: int) -> Diagnosis | None:
    """Stagnation or cycling in ``records`` (in proposal order), or None; 0 disables both."""
    if patience <= 0:
        return None
    since = steps_without_improvement(records)
    if since >= patience:
        best = best_committed(records)
        level = f" (best geomean {best.geomean:.4g})" if best and best.geomean else ""
        return Diagnosis("stagnation", f"{since} steps without a committed improvement{level}")
    by_id = {r.id: r for r in records}
    mine = [r for r in records if r.operator == operator and r.source][-2 * patience:]
    if len(mine) < 2:
        return None
    latest = mine[-1]
    if latest.committed:
        return None  # a repeated idea that was committed paid off
    for earlier in reversed(mine[:-1]):
        if latest.source_hash == earlier.source_hash:
            why = "the same source"
        elif _jaccard(_added(latest, by_id), _added(earlier, by_id)) >= _SAME_CHANGE:
            why = "the same change"
        elif _jaccard(_words(latest.rationale), _words(earlier.rationale)) >= _SAME_RATIONALE:
            why = "nearly the same rationale"
        else:
            continue
        return Diagnosis("cycling", f"{latest.name} repeats {earlier.name} ({why})")
    return None


class Supervisor:
    def __init__(self, client: MessagesClient, operator: str, patience: int) -> None:
        self.client = client
        self.operator = operator
        self.patience = patience
        self.directive: str | None = None
        self._issued_at_step: int | None = None
        self._best_at_issue = 0.0

    def steer(self, records: list[Record], meter: Meter) -> Event | None:
        """Review and steer if the search stalls or cycles; the event of the intervention."""
        steps = sum(not r.starting for r in records)
        best = best_committed(records)
        if self.directive and best is not None and (best.geomean or 0.0) > self._best_at_issue:
            self.directive = None  # it paid off, or something else did: the steps are free
        diagnosis = diagnose(records, self.operator, self.patience)
        if diagnosis is None or (self._issued_at_step is not None
                                 and steps - self._issued_at_step < self.patience):
            return None
        system = [{"type": "text", "text": SUPERVISOR}]
        review = trajectory(records, diagnosis.why, self.directive)
        messages = [{"role": "user", "content": [{"type": "text", "text": review}]}]
        before = meter.spent()
        max_tokens = meter.allowance(0, (len(SUPERVISOR) + len(review)) // 3, _REVIEW_TOKENS)
        reply = self.client.create(system=system, messages=messages, max_tokens=max_tokens,
                                   deadline=meter.deadline)
        meter.add(reply.usage, turn=False)
        text = "\n".join(b["text"] for b in reply.content if b.get("type") == "text").strip()
        self.directive = text or None
        self._issued_at_step = steps
        self._best_at_issue = (best.geomean or 0.0) if best is not None else 0.0
        cost = {k: v - before[k] for k, v in meter.spent().items()}
        return Event("supervisor", f"{diagnosis.trigger}: {diagnosis.why}",
                     {"trigger": diagnosis.trigger, "why": diagnosis.why, "directive": text,
                      **cost})
