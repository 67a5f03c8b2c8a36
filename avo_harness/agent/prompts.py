"""What the agent and the supervisor are told.

The system prompt is the same for every step of a task (it is cached); everything that
changes from step to step goes in the step's first message.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from ..evolve.lineage import Record, best_committed
from ..tasks import Task
from .budget import Limits
from .knowledge import Knowledge

SYSTEM = """\
You are the variation operator of an evolutionary search over GPU kernels (AVO, agentic \
variation operators). In each step you produce one new candidate module for the task below, \
building on the lineage of earlier candidates. The loop evaluates what you submit with the \
same harness you can run here, and commits it to candidates/{task}/ only if it passes every \
correctness check and its geomean TFLOP/s over the benchmark configurations is at least that \
of the best committed candidate.

How to work in a step:
1. Read the lineage (read_lineage), the run's notebook (in the first message) and the \
candidates you build on (read_candidate: files, diff or report). Look up what you need in the \
knowledge base (search_knowledge, read_knowledge); its contents are listed below.
2. Decide what limits the best candidate and form one idea to test. One idea per step keeps \
the lineage readable: each commit says what one idea was worth.
3. Write the candidate (write_candidate, or edit_candidate for a targeted change; helper \
modules _name.py beside it are part of an attempt and are kept with it). Work on it with the \
workbench, in the judge's sandbox, in seconds: run_case runs it on one input (a benchmark \
configuration, a failure's replay, or an input you describe) and says whether it is right, \
where the error is, and its time against the physical floor; time_config times it next to \
the best committed candidate on the configurations you name; compile_info (GPU) shows what \
Triton compiled (launch setting, registers, spills, shared memory, IR, PTX, SASS); profile \
(GPU with ncu) shows throughput, tensor-pipe use, occupancy and stall reasons. Then run the \
loop's own evaluation (evaluate_candidate): correctness over the whole input space (the \
minimal failing input and the error statistics when it is wrong), and the time and TFLOP/s \
of each benchmark configuration next to the best committed candidate.
4. When it fails, diagnose and repair it. When it passes but is not faster, refine it or \
change course. Failed drafts stay in this conversation only; write what you learnt, with the \
numbers, in the run's notebook (write_notes): later steps read it, and nothing else of this \
conversation reaches them.
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
have submitted. Every tool's time is the step's: its answer says what it took.

The task: {task}
{contract}

A case (run_case, compile_info, profile) is an object with this task's keys; keys you leave \
out are those of the first benchmark configuration here: {case}. The configurations: \
{configs}.

Knowledge base contents (section ids for read_knowledge):
{contents}
"""

OPENING = """\
Generation {generation}. {best}
The lineage holds {count} candidates of this task ({committed} committed, {failed} failed).
Limits of this step: {turns} model calls, {tokens:,} tokens, ${usd:.2f}, {minutes:.0f} \
minutes{run}.{directive}{notebook}
Start by reading the lineage."""

#: Characters of the run's notebook the first message of a step shows (the latest entries).
NOTEBOOK_CHARS = 8_000

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


def system_prompt(task: Task, knowledge: Knowledge, cuda: bool) -> str:
    contract = (sys.modules[type(task).__module__].__doc__ or "").strip()
    configs = task.bench_configs(cuda=cuda)
    return SYSTEM.format(task=task.name, contract=contract, contents=knowledge.contents(),
                         case=json.dumps(configs[0].case),
                         configs=", ".join(c.name for c in configs))


def notebook_text(entries: Sequence[dict[str, Any]]) -> str:
    """The run's notebook as the first message of a step shows it: the latest entries that
    fit in ``NOTEBOOK_CHARS``, oldest first."""
    shown: list[str] = []
    for entry in reversed(entries):
        line = f"- g{entry.get('generation', '?')}: {entry.get('text', '')}"
        if sum(map(len, shown)) + len(line) > NOTEBOOK_CHARS:
            break
        shown.append(line)
    older = len(entries) - len(shown)
    return ("\n".join(reversed(shown))
            + (f"\n({older} older entries not shown)" if older else ""))


def opening(generation: int, records: list[Record], limits: Limits,
            directive: str | None, notebook: Sequence[dict[str, Any]] = ()) -> str:
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
        if directive else "",
        notebook=f"\n\nThe run's notebook, written by its earlier steps (oldest first):\n"
        f"{notebook_text(notebook)}" if notebook else
        "\n\nThe run's notebook is empty: this is its first agent step.")


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
