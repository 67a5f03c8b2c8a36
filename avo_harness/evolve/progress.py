"""What a run shows while it works: a line per evaluation, a live status on a terminal,
and the final table of committed versions. Output that is not a terminal gets plain
lines only (rich degrades by itself).

Text that comes from elsewhere (a model's notes and rationales, failure reasons) is printed
as :class:`rich.text.Text`, never parsed as markup or emoji codes: ``acc[/N]`` would raise,
``y[b, h]`` would vanish; and its control characters are shown escaped (``\\x1b``), so that
it cannot move the cursor, recolour or clear the user's terminal."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

from ..live import describe
from .lineage import (BEST_START, CUT_SLOWER, CUT_TIME, FAILED, HARNESS_ERROR, LABELS, NOT_FASTER,
                      PASSED, Record, best_start)

#: What each record's rationale is shown with in a table: why it failed or was cut.
_EXPLAINED = (FAILED, HARNESS_ERROR, CUT_SLOWER, CUT_TIME)


class Progress:
    def __init__(self, console: Console | None = None) -> None:
        # Off a terminal rich assumes 80 columns; a log file can take a wide table.
        self.console = console or Console(highlight=False)
        if not self.console.is_terminal:
            self.console.width = max(self.console.width, 160)
        self._lock = threading.Lock()
        #: The evaluations in flight on a terminal, and what the status line says of each.
        self._shown: dict[str, str] = {}
        self._status: Status | None = None

    @contextlib.contextmanager
    def evaluating(self, label: str) -> Iterator[Callable[[dict[str, Any]], None]]:
        """Yields what to call with the evaluation's progress (``live.py``): on a terminal
        one status line shows every evaluation in flight, each with a bar of the inputs or
        configurations done. Safe from the scheduler's threads."""
        if not self.console.is_terminal:
            self.console.print(plain(f"evaluating {label} ..."))
            yield lambda state: None
            return
        with self._lock:
            self._shown[label] = "..."
            if self._status is None:
                self._status = self.console.status("")
                self._status.start()
            self._refresh()

        def show(state: dict[str, Any]) -> None:
            with self._lock:
                if label in self._shown:
                    self._shown[label] = _bar(state)
                    self._refresh()
        try:
            yield show
        finally:
            with self._lock:
                del self._shown[label]
                if self._shown:
                    self._refresh()
                elif self._status is not None:
                    self._status.stop()
                    self._status = None

    def _refresh(self) -> None:
        assert self._status is not None
        self._status.update(plain("; ".join(f"evaluating {label}: {bar}"
                                           for label, bar in self._shown.items())))

    def line(self, text: str) -> None:
        self.console.print(plain(text))

    def result(self, record: Record, best: float, start: Record | None, elapsed_s: float,
               budget: str) -> None:
        """One evaluation's line; ``start``: the best starting candidate (``best_start``),
        which the speedup names."""
        cut = record.status in (CUT_SLOWER, CUT_TIME)
        verdict = ((LABELS["committed"], "green") if record.committed else
                   (NOT_FASTER, "yellow") if record.status == PASSED else
                   ("not judged", "magenta") if record.status == HARNESS_ERROR else
                   (record.reason or "cut", "cyan") if cut else
                   (LABELS[FAILED], "red"))
        why = f" ({record.reason})" if record.reason and not cut else ""
        speedup = (f"{best / start.geomean:.3f}x {start.name}" if start and start.geomean
                   else "-")
        spent = phases(record)
        took = (f"eval {record.eval_s:,.1f} s{f' ({spent})' if spent else ''}; "
                if record.eval_s else "")
        self.console.print(Text.assemble(
            plain(f"gen {record.generation:>3} {record.name}: "), verdict,
            plain(f"{why}; geomean {_geomean(record)}; best {best:.4g} ({speedup}); {took}"
            f"{elapsed_s:,.0f} s elapsed; {budget}")))

    def table(self, title: str, records: list[Record], start: float) -> None:
        """``records`` with their geomean over ``start``, the best starting candidate's (named
        in the header when it is among them)."""
        table = Table(title=title)
        named = best_start(records)
        versus = (f"vs {named.name}" if named is not None and named.geomean == start
                  else f"vs {BEST_START}")
        for column in ("gen", "name", "operator", "status", "geomean", versus, "parents",
                       "rationale"):
            table.add_column(column, overflow="fold")
        for r in records:
            table.add_row(str(r.generation), r.name, r.operator, r.label, _geomean(r),
                          f"{r.geomean / start:.3f}x" if r.geomean and start else "-",
                          ",".join(map(str, r.parents)) or "-",
                          plain((f"{r.rationale} [{r.reason}{_partial(r)}]"
                                 if r.status in _EXPLAINED else r.rationale)[:240]))
        self.console.print(table)


def plain(text: str) -> Text:
    """``text`` as it reads, for a terminal: no markup, and every control character but a
    newline or a tab escaped (a model's ``\\x1b[2J`` would clear the screen)."""
    return Text("".join(c if c in "\n\t" or not (ord(c) < 32 or 127 <= ord(c) < 160)
                        else repr(c)[1:-1] for c in text))


def _bar(state: dict[str, Any], width: int = 20) -> str:
    """``[#####-----] correctness: 40/113 inputs, 0/16 configurations, 12 s``."""
    done, total = ((state.get("configs_done", 0), state.get("configs_total", 0))
                   if state.get("phase") == "timing" else
                   (state.get("cases_done", 0), state.get("cases_total", 0)))
    filled = min(width, int(width * done / total)) if total else 0
    return f"[{'#' * filled}{'-' * (width - filled)}] {describe(state)}"


def phases(record: Record) -> str:
    """``start 3.1 s, compile 12.0 s, ...``: where its evaluation's time went, as its report
    says (reports before ``phases_s`` say nothing)."""
    entry = record.result.entry
    return entry.phases_s.listed(" s") if entry is not None and entry.phases_s else ""


def _geomean(record: Record) -> str:
    """A cut candidate has none: not every configuration was timed."""
    if record.status in (CUT_SLOWER, CUT_TIME):
        return "-"
    return f"{record.geomean:.4g}" if record.geomean else "0"


def _partial(record: Record) -> str:
    """The rates a cut candidate was timed at before it was cut."""
    if record.status != CUT_SLOWER or not record.scores:
        return ""
    return ": " + ", ".join(f"{config} {rate:.4g}" for config, rate in record.scores.items())
