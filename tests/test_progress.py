"""The run's lines and tables (evolve/progress.py): every speedup names what it is against."""
from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console

from avo_harness.evolve.lineage import PASSED, START, Record
from avo_harness.evolve.progress import Progress


def _record(generation: int, name: str, operator: str, geomean: float) -> Record:
    return Record(id=generation + 1, run_id=1, generation=generation, name=name, parents=[],
                  operator=operator, rationale="why", source="", source_hash="",
                  status=PASSED, committed=True, reason=None, scores={"a": geomean},
                  geomean=geomean, report=None, operator_s=None, eval_s=None)


def _shown(show: Callable[[Progress], None]) -> str:
    out = io.StringIO()
    show(Progress(Console(file=out, width=400)))
    return out.getvalue()


def test_the_speedups_name_the_best_starting_candidate_not_the_operator() -> None:
    seed = _record(0, "seed", START, 300.0)
    hopper = _record(1, "hopper_best", START, 395.1)
    mutant = _record(2, "evo_r1_g002", "builtin", 410.0)
    line = _shown(lambda p: p.result(hopper, 395.1, hopper, 10.0, "3 generations left"))
    assert "best 395.1 (1.000x hopper_best)" in line
    table = _shown(lambda p: p.table("run 1", [seed, hopper, mutant], 395.1))
    assert "vs hopper_best" in table and "vs seed" not in table
    assert "1.038x" in table


def test_a_table_without_its_start_says_best_start() -> None:
    """The final table shows the committed versions; the reference may not be among them."""
    mutant = _record(2, "evo_r1_g002", "builtin", 410.0)
    table = _shown(lambda p: p.table("committed", [mutant], 395.1))
    assert "vs best start" in table and "1.038x" in table


def test_control_characters_from_a_model_are_shown_escaped() -> None:
    """A model's note or rationale cannot drive the user's terminal (an independent fake
    model sent a NUL; an ESC sequence would recolour or clear it)."""
    note = "kept \x1b[2J\x1b[31mred\x00 and\ttabs"
    line = _shown(lambda p: p.line(note))
    assert "\x1b" not in line and "\x00" not in line
    assert "kept \\x1b[2J\\x1b[31mred\\x00 and" in line  # (rich expands the tab)
    mutant = _record(2, "evo_r1_g002", "builtin", 410.0)
    mutant.rationale = "try\x07 BLOCK_N=128\x1b]0;title\x07"
    table = _shown(lambda p: p.table("committed", [mutant], 400.0))
    assert "\x1b" not in table and "\x07" not in table and "\\x07" in table
