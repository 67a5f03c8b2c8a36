"""What the agent and the supervisor are told.

The system prompt is the same for every step of a task (it is cached); everything that
changes from step to step goes in the step's first message.
"""
from __future__ import annotations

import sys

from ..evolve.lineage import Record
from ..tasks import Task
from .budget import Limits
from .knowledge import Knowledge
from .views import best_committed

SYSTEM = """\
You are the variation operator of an evolutionary search over GPU kernels (AVO, agentic \
variation operators). In each step you produce one new candidate module for the task below, \
building on the lineage of earlier candidates. The loop evaluates what you submit with the \
same harness you can run here, and commits it to candidates/{task}/ only if it passes every \
correctness check and its geomean TFLOP/s over the benchmark configurations is at least that \
of the best committed candidate.

How to work in a step:
1. Read the lineage (read_lineage) and the candidates you build on (read_candidate: source, \
diff or report). Look up what you need in the knowledge base (search_knowledge, \
read_knowledge); its contents are listed below.
2. Decide what limits the best candidate and form one idea to test. One idea per step keeps \
the lineage readable: each commit says what one idea was worth.
3. Write the candidate (write_candidate, or edit_candidate for a targeted change) and run the \
harness on it (evaluate_candidate). Its report gives the correctness outcome (the minimal \
failing input, the error statistics and where the worst element is when it is wrong) and the \
time and TFLOP/s of each benchmark configuration next to the best committed candidate.
4. When it fails, diagnose from the report and repair it. When it passes but is not faster, \
refine it or change course. Failed drafts stay in this conversation only.
5. Before submitting, criticise your version: is it correct for every input the contract \
allows, not only the benchmark shapes? Is the speedup larger than timing noise (a few \
percent)? Then submit_candidate with a rationale: what changed, why it should be faster, and \
what the measurements showed. Only a version that passed its evaluation in this step can be \
submitted; submit one you believe is faster than the best committed candidate.

Rules: the module must keep the entry function, its signature and the contract; it may not \
name the library implementations the task forbids (the harness refuses them); if it declares \
TUNABLES and CONSTRAINTS, keep them literal (another operator varies them by rewriting the \
text). Timings whose clock is interpreter-wall come from the Triton interpreter on a CPU: \
they measure Python emulating the kernel, not GPU speed. You have a limited number of turns, \
tokens, dollars and time per step (the first message says how many), and each evaluation \
takes a while: evaluate deliberately, and do not end a turn without a tool call until you \
have submitted.

The task: {task}
{contract}

Knowledge base contents (section ids for read_knowledge):
{contents}
"""

OPENING = """\
Generation {generation}. {best}
The lineage holds {count} candidates of this task ({committed} committed, {failed} failed).
Limits of this step: {turns} model calls, {tokens:,} tokens, ${usd:.2f}, {minutes:.0f} \
minutes{run}.{directive}
Start by reading the lineage."""

NUDGE = ("Continue with the tools. The step ends when submit_candidate accepts a version that "
         "passed evaluate_candidate, or when its limits run out.")

SUPERVISOR = """\
You supervise an evolutionary search over GPU kernels in which an agent proposes one \
candidate per step and a candidate is committed only if it is correct and at least as fast \
as the best so far. The search has stalled or is repeating itself. Review its trajectory \
and write a directive for the agent's next steps: in under 250 words, (1) what has been \
tried and why it did not pay off, as far as the record shows, and (2) two or three concrete \
directions that the record shows were not tried, most promising first, each with the effect \
you expect and its risk. Write the directive itself, addressed to the agent, nothing else."""


def system_prompt(task: Task, knowledge: Knowledge) -> str:
    contract = (sys.modules[type(task).__module__].__doc__ or "").strip()
    return SYSTEM.format(task=task.name, contract=contract, contents=knowledge.contents())


def opening(generation: int, records: list[Record], limits: Limits,
            directive: str | None) -> str:
    best = best_committed(records)
    best_text = (f"The best committed candidate is #{best.id} {best.name} with geomean "
                 f"{best.geomean:.4g} TFLOP/s." if best is not None and best.geomean
                 else "No candidate is committed yet.")
    run = []
    if limits.run_usd is not None:
        run.append(f"${limits.run_usd:.2f}")
    if limits.run_tokens is not None:
        run.append(f"{limits.run_tokens:,} tokens")
    return OPENING.format(
        generation=generation, best=best_text, count=len(records),
        committed=sum(r.committed for r in records),
        failed=sum(r.status == "failed" for r in records), turns=limits.turns,
        tokens=limits.tokens, usd=limits.usd, minutes=limits.seconds / 60,
        run=f"; the whole run has {' and '.join(run)} left" if run else "",
        directive=f"\n\nThe supervisor's directive for these steps:\n{directive}"
        if directive else "")


def trajectory(records: list[Record], why: str, previous: str | None) -> str:
    """The supervisor's view: the recent steps, what triggered it, its last directive."""
    best = best_committed(records)
    steps = [r for r in records if r.operator != "seed"][-16:]
    lines = [f"Trigger: {why}.",
             f"Best committed: #{best.id} {best.name}, geomean {best.geomean:.4g}."
             if best is not None and best.geomean else "Nothing is committed."]
    if previous:
        lines.append(f"Your previous directive was:\n{previous}")
    lines.append("Recent steps (oldest first):")
    for r in steps:
        ratio = f" = {r.geomean / best.geomean:.3f}x best" if r.geomean and best \
            and best.geomean else ""
        why_failed = f" [{r.reason}]" if r.reason else ""
        lines.append(f"- g{r.generation} #{r.id} {r.operator} {r.outcome}, geomean "
                     f"{r.geomean or 0:.4g}{ratio}: {' '.join(r.rationale.split())[:300]}"
                     f"{why_failed}")
    return "\n".join(lines)
