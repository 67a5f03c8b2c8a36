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
