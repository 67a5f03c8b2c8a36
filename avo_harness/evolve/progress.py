"""What a run shows while it works: a line per evaluation, a live status on a terminal,
and the final table of committed versions. Output that is not a terminal gets plain
lines only (rich degrades by itself)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

from .lineage import FAILED, HARNESS_ERROR, PASSED, Record


class Progress:
    def __init__(self, console: Console | None = None) -> None:
        # Off a terminal rich assumes 80 columns; a log file can take a wide table.
        self.console = console or Console(highlight=False)
        if not self.console.is_terminal:
            self.console.width = max(self.console.width, 160)

    @contextlib.contextmanager
    def evaluating(self, label: str) -> Iterator[None]:
        if self.console.is_terminal:
            with self.console.status(f"evaluating {label} ..."):
                yield
        else:
            self.console.print(f"evaluating {label} ...")
            yield

    def line(self, text: str) -> None:
        self.console.print(text)

    def result(self, record: Record, best: float, seed: float, elapsed_s: float,
               budget: str) -> None:
        verdict = ("[green]committed[/]" if record.committed else
                   "[yellow]passed, not faster[/]" if record.status == PASSED else
                   "[magenta]not judged[/]" if record.status == HARNESS_ERROR else
                   "[red]failed[/]")
        score = f"{record.geomean:.4g}" if record.geomean else "0"
        speedup = f"{best / seed:.3f}x seed" if seed else "-"
        why = f" ({record.reason})" if record.reason else ""
        self.console.print(
            f"gen {record.generation:>3} {record.name}: {verdict}{why}; geomean {score}; "
            f"best {best:.4g} ({speedup}); {elapsed_s:,.0f} s elapsed; {budget}")

    def table(self, title: str, records: list[Record], seed: float) -> None:
        table = Table(title=title)
        for column in ("gen", "name", "operator", "status", "geomean", "vs seed", "parents",
                       "rationale"):
            table.add_column(column, overflow="fold")
        for r in records:
            table.add_row(str(r.generation), r.name, r.operator,
                          r.outcome,
                          f"{r.geomean:.4g}" if r.geomean else "0",
                          f"{r.geomean / seed:.3f}x" if r.geomean and seed else "-",
                          ",".join(map(str, r.parents)) or "-",
                          (f"{r.rationale} [{r.reason}]" if r.status in (FAILED, HARNESS_ERROR)
                           else r.rationale)[:160])
        self.console.print(table)
